// Starting and stopping the real binary, `bin/handoff serve`, for the browser
// tests: on a free loopback port, with a fresh SQLite database in a new
// temporary folder, and extra flags if a test needs them (the simulated
// payment provider's, say). global-setup.ts starts the suite's shared server
// with it; fixtures.ts starts dedicated ones for spec files that need other
// flags.
//
// HANDOFF_E2E_BINARY names another binary to start than bin/handoff.

import { spawn, type ChildProcess } from "node:child_process";
import { copyFileSync, createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export const ROOT = resolve(import.meta.dirname, "..");
const BINARY = process.env.HANDOFF_E2E_BINARY ? resolve(process.env.HANDOFF_E2E_BINARY) : join(ROOT, "bin", "handoff");
const START_TIMEOUT_MS = 20_000;
const START_ATTEMPTS = 3;

/** Server is one running `bin/handoff serve`. */
export interface Server {
  url: string;
  /** database is the --database value it runs on. */
  database: string;
  /** alive says whether the process still runs. */
  alive(): boolean;
  /** logTail is the end of its log, for error messages. */
  logTail(lines?: number): string;
  /**
   * stop ends it (SIGTERM, then SIGKILL after 5 s), copies its log to
   * test-results/<keepLogAs> when given, and removes its folder.
   */
  stop(keepLogAs?: string): Promise<void>;
}

export interface StartOptions {
  /** flags are extra arguments of `serve`, such as ["--payment-fail-first", "2"]. */
  flags?: readonly string[];
  /** label names the server in messages and its temporary folder. */
  label?: string;
}

function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", fail);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => (port ? ok(port) : fail(new Error("no port"))));
    });
  });
}

async function healthy(url: string): Promise<boolean> {
  try {
    const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) });
    return res.ok;
  } catch {
    return false;
  }
}

function running(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

function exited(child: ChildProcess): Promise<void> {
  return new Promise((ok) => {
    if (!running(child)) ok();
    else child.once("exit", () => ok());
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (!running(child)) return;
  child.kill("SIGTERM");
  const done = await Promise.race([exited(child).then(() => true), new Promise<boolean>((ok) => setTimeout(() => ok(false), 5000))]);
  if (!done) {
    child.kill("SIGKILL");
    await exited(child);
  }
}

function tail(path: string, lines = 30): string {
  try {
    return readFileSync(path, "utf8").split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

/** launch runs the binary once on a fresh port; null when it did not come up (say, the port was taken meanwhile). */
async function launch(
  dir: string,
  database: string,
  flags: readonly string[],
  label: string,
  attempt: number,
): Promise<{ child: ChildProcess; url: string; log: string } | null> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const log = join(dir, `server-${attempt}.log`);
  const out = createWriteStream(log);
  const child = spawn(BINARY, ["serve", "--addr", `127.0.0.1:${port}`, "--database", database, "--log-level", "info", ...flags], {
    cwd: dir,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, HANDOFF_ROLE: "all" },
  });
  child.stdout?.pipe(out);
  child.stderr?.pipe(out);
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (!running(child)) break;
    if (await healthy(url)) return { child, url, log };
    await new Promise((ok) => setTimeout(ok, 100));
  }
  await stopChild(child);
  console.error(`e2e: ${label} did not become healthy on ${url}; its log ends with:\n${tail(log)}`);
  return null;
}

/** startServer starts `bin/handoff serve` and waits until /healthz answers. */
export async function startServer(opts: StartOptions = {}): Promise<Server> {
  const flags = opts.flags ?? [];
  const label = opts.label ?? "bin/handoff";
  if (!existsSync(BINARY)) throw new Error(`e2e: ${BINARY} is missing; run \`make build\` first.`);
  const dir = mkdtempSync(join(tmpdir(), "handoff-e2e-"));
  const database = `sqlite:${join(dir, "handoff.db")}`;
  let started: Awaited<ReturnType<typeof launch>> = null;
  for (let attempt = 1; attempt <= START_ATTEMPTS && !started; attempt++) started = await launch(dir, database, flags, label, attempt);
  if (!started) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`e2e: could not start ${label} (bin/handoff serve ${flags.join(" ")})`);
  }
  const { child, url, log } = started;
  // Should the runner go away without stopping it, the server goes too.
  const killOnExit = () => child.kill("SIGKILL");
  process.once("exit", killOnExit);
  let stopped = false;
  return {
    url,
    database,
    alive: () => running(child),
    logTail: (lines) => tail(log, lines),
    async stop(keepLogAs) {
      if (stopped) return;
      stopped = true;
      process.off("exit", killOnExit);
      await stopChild(child);
      if (keepLogAs) {
        try {
          mkdirSync(join(ROOT, "test-results"), { recursive: true });
          copyFileSync(log, join(ROOT, "test-results", keepLogAs));
        } catch {
          // The log is a convenience only.
        }
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
