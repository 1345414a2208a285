// Starts the real binary, `bin/handoff serve`, on a free loopback port with a
// fresh SQLite database in a new temporary folder (e2e/server.ts), waits
// until /healthz answers, and hands the address to the tests as
// HANDOFF_E2E_URL. The returned function is the teardown: it stops the
// server, keeps its log in test-results/ and removes the folder.
//
// HANDOFF_E2E_URL set beforehand points the suite at a server already running
// instead (nothing is started then); HANDOFF_E2E_BINARY names another binary
// to start than bin/handoff. Spec files that need other flags of `serve`
// start servers of their own (fixtures.ts, serverFlags).

import { startServer } from "./server";

export default async function globalSetup(): Promise<(() => Promise<void>) | undefined> {
  if (process.env.HANDOFF_E2E_URL) return undefined;
  const server = await startServer();
  process.env.HANDOFF_E2E_URL = server.url;
  console.log(`e2e: bin/handoff serve on ${server.url}, database ${server.database}`);

  return async () => {
    if (!server.alive()) {
      console.error(`e2e: bin/handoff stopped during the tests; its log ends with:\n${server.logTail()}`);
    }
    await server.stop("handoff-server.log");
  };
}
