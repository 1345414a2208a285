// Starts the real binary, `bin/handoff serve`, on a free loopback port with a
// fresh SQLite database in a new temporary folder, waits until /healthz
// answers, and hands the address to the tests as HANDOFF_E2E_URL. The
// returned function is the teardown: it stops the server, keeps its log in
// test-results/ and removes the folder.
//
// HANDOFF_E2E_URL set beforehand points the suite at a server already running
// instead (nothing is started then); HANDOFF_E2E_BINARY names another binary
// to start than bin/handoff.

import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, copyFileSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dirname, "..");
// HANDOFF_E2E_BINARY runs another build of the program instead.
const BINARY = process.env.HANDOFF_E2E_BINARY ? resolve(process.env.HANDOFF_E2E_BINARY) : join(ROOT, "bin", "handoff");
const START_TIMEOUT_MS = 20_000;

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

function exited(child: ChildProcess): Promise<void> {
  return new Promise((ok) => {
    if (child.exitCode !== null || child.signalCode !== null) ok();
    else child.once("exit", () => ok());
  });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
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

/** start runs the binary once on a fresh port; null when it did not come up (say, the port was taken meanwhile). */
async function start(dir: string, attempt: number): Promise<{ child: ChildProcess; url: string; log: string } | null> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const log = join(dir, `server-${attempt}.log`);
  const out = createWriteStream(log);
  const child = spawn(
    BINARY,
    ["serve", "--addr", `127.0.0.1:${port}`, "--database", `sqlite:${join(dir, "handoff.db")}`, "--log-level", "info"],
    { cwd: dir, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, HANDOFF_ROLE: "all" } },
  );
  child.stdout?.pipe(out);
  child.stderr?.pipe(out);
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) break;
    if (await healthy(url)) return { child, url, log };
    await new Promise((ok) => setTimeout(ok, 100));
  }
  await stop(child);
  console.error(`e2e: bin/handoff did not become healthy on ${url}; its log ends with:\n${tail(log)}`);
  return null;
}

export default async function globalSetup(): Promise<(() => Promise<void>) | undefined> {
  if (process.env.HANDOFF_E2E_URL) return undefined;
  if (!existsSync(BINARY)) throw new Error(`e2e: ${BINARY} is missing; run \`make build\` first.`);

  const dir = mkdtempSync(join(tmpdir(), "handoff-e2e-"));
  let server: Awaited<ReturnType<typeof start>> = null;
  for (let attempt = 1; attempt <= 3 && !server; attempt++) server = await start(dir, attempt);
  if (!server) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error("e2e: could not start bin/handoff serve");
  }
  const { child, url, log } = server;
  // Should the runner go away without its teardown, the server goes too.
  const killOnExit = () => child.kill("SIGKILL");
  process.once("exit", killOnExit);
  process.env.HANDOFF_E2E_URL = url;
  console.log(`e2e: bin/handoff serve on ${url}, database sqlite:${join(dir, "handoff.db")}`);

  return async () => {
    process.off("exit", killOnExit);
    if (child.exitCode !== null || child.signalCode !== null) {
      console.error(`e2e: bin/handoff stopped during the tests (${child.exitCode ?? child.signalCode}); its log ends with:\n${tail(log)}`);
    }
    await stop(child);
    try {
      mkdirSync(join(ROOT, "test-results"), { recursive: true });
      copyFileSync(log, join(ROOT, "test-results", "handoff-server.log"));
    } catch {
      // The log is a convenience only.
    }
    rmSync(dir, { recursive: true, force: true });
  };
}
