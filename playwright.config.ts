// Playwright runs the browser tests in e2e/ against the real binary
// (bin/handoff, built by `make build`), which e2e/global-setup.ts starts on a
// free loopback port with a fresh SQLite database for every run. Spec files
// that need other flags of `serve` (the simulated payment provider's) get a
// server of their own per worker: test.use({ serverFlags }) in e2e/fixtures.ts.
import { existsSync } from "node:fs";
import { defineConfig } from "@playwright/test";

const CI = !!process.env.CI;

// Debian's Chromium: Playwright cannot download its own browser here. Where
// /usr/bin/chromium is missing, Playwright's own browser is used instead.
const DEBIAN_CHROMIUM = "/usr/bin/chromium";
const executablePath = existsSync(DEBIAN_CHROMIUM) ? DEBIAN_CHROMIUM : undefined;

export default defineConfig({
  testDir: "e2e",
  globalSetup: "./e2e/global-setup.ts",
  outputDir: "test-results",
  // Two cores: one worker per core, each test with two browser contexts.
  workers: 2,
  fullyParallel: false,
  forbidOnly: CI,
  retries: 0,
  timeout: 45_000,
  globalTimeout: 170_000,
  expect: { timeout: 10_000 },
  reporter: [["list"], ["html", { open: "never" }]],
  use: {
    browserName: "chromium",
    // global-setup.ts sets it before the workers start.
    baseURL: process.env.HANDOFF_E2E_URL,
    viewport: { width: 1400, height: 900 },
    // Money and times are formatted in the reader's locale: pin it.
    locale: "en-US",
    timezoneId: "UTC",
    headless: true,
    trace: "retain-on-failure",
    screenshot: "only-on-failure",
    actionTimeout: 10_000,
    navigationTimeout: 15_000,
    launchOptions: {
      executablePath,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
      ],
    },
  },
  projects: [{ name: "chromium" }],
});
