// Shared steps of the browser tests: two members (two browser contexts) of
// one team, and the locators of the page by role and accessible name, exactly
// as shared/UX.md names them.

import { test as base, expect, type Browser, type BrowserContext, type Locator, type Page } from "@playwright/test";
import { startServer } from "./server";

export { expect };

/** Member is one person in their own browser context. */
export interface Member {
  name: string;
  context: BrowserContext;
  page: Page;
}

/** unique makes a name no other test (or run against the same server) uses. */
export function unique(prefix: string): string {
  return `${prefix} ${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
}

// ---- locators --------------------------------------------------------------

export const ui = {
  banner: (p: Page) => p.getByRole("banner"),
  connection: (p: Page) => p.getByRole("status", { name: "Connection", exact: true }),
  nav: (p: Page) => p.getByRole("navigation", { name: "Drafts", exact: true }),
  draft: (p: Page) => p.getByRole("main", { name: "Draft", exact: true }),
  title: (p: Page) => ui.draft(p).getByRole("textbox", { name: "Title", exact: true }),
  presence: (p: Page) => ui.draft(p).getByRole("list", { name: "In this draft", exact: true }),
  items: (p: Page) => ui.draft(p).getByRole("table", { name: "Items", exact: true }),
  product: (p: Page) => ui.draft(p).getByRole("combobox", { name: "Product", exact: true }),
  addItem: (p: Page) => ui.draft(p).getByRole("button", { name: "Add item", exact: true }),
  saveState: (p: Page) => p.getByRole("status", { name: "Save state", exact: true }),
  submit: (p: Page) => ui.draft(p).getByRole("button", { name: "Submit order", exact: true }),
  submissions: (p: Page) => p.getByRole("complementary", { name: "Submissions", exact: true }),
  /** row is the item row of a product (its name is in the row's first cell). */
  row: (p: Page, productName: string) => ui.items(p).getByRole("row").filter({ hasText: productName }),
  quantity: (row: Locator) => row.getByRole("spinbutton", { name: "Quantity", exact: true }),
  note: (row: Locator) => row.getByRole("textbox", { name: "Note", exact: true }),
  remove: (row: Locator) => row.getByRole("button", { name: "Remove", exact: true }),
  /**
   * operations are the listitems of the Submissions list for one draft title:
   * each operation's listitem holds its list "Steps" (the steps' own
   * listitems do not hold the title).
   */
  operations: (p: Page, title: string) =>
    ui
      .submissions(p)
      .getByRole("listitem")
      .filter({ hasText: title })
      .filter({ has: p.getByRole("list", { name: "Steps", exact: true }) }),
  /** steps are the listitems of an operation's list "Steps". */
  steps: (operation: Locator) => operation.getByRole("list", { name: "Steps", exact: true }).getByRole("listitem"),
  /** step is one step of an operation, by its name ("Take payment"). */
  step: (operation: Locator, name: string) => ui.steps(operation).filter({ hasText: name }),
  /** retry is the "Retry" button of an operation whose failure can be retried. */
  retry: (operation: Locator) => operation.getByRole("button", { name: "Retry", exact: true }),
};

// ---- the server's view -----------------------------------------------------

/** ApiOperation is the part of an operation (shared/PROTOCOL.md) the tests read. */
export interface ApiOperation {
  id: string;
  draft_id: string;
  message_id: string;
  status: string;
  revision: number;
  result: { order_number?: string; total_cents?: number; currency?: string } | null;
  error: { code: string; message: string; retryable?: boolean } | null;
  steps: Array<{ name: string; status: string; attempts: number; error: string | null }>;
  submitted_by: { display_name: string };
  seq: number;
  /** attempt counts manual retries (an extension of the contract). */
  attempt?: number;
  /** retryable says Retry is offered (an extension of the contract). */
  retryable?: boolean;
}

/** operationsOf is what GET /api/operations says about one draft, newest first. */
export async function operationsOf(page: Page, draftId: string): Promise<ApiOperation[]> {
  const res = await page.request.get("/api/operations");
  expect(res.status()).toBe(200);
  const body = (await res.json()) as { operations: ApiOperation[] };
  return body.operations.filter((o) => o.draft_id === draftId);
}

/** ApiDraft is the part of a draft (shared/PROTOCOL.md) the tests read. */
export interface ApiDraft {
  id: string;
  revision: number;
  state: "editing" | "submitted";
  items: Array<{ sku: string; quantity: number }>;
  submission: { operation_id: string; message_id: string; revision: number } | null;
}

/** draftOf is what GET /api/drafts/{id} says. */
export async function draftOf(page: Page, draftId: string): Promise<ApiDraft> {
  const res = await page.request.get(`/api/drafts/${encodeURIComponent(draftId)}`);
  expect(res.status()).toBe(200);
  return (await res.json()) as ApiDraft;
}

/**
 * watchSubmissions records every text the Submissions panel shows from now
 * on, so a state that passes quickly (Pending) can be checked afterwards.
 */
export async function watchSubmissions(page: Page): Promise<() => Promise<string[]>> {
  await ui.submissions(page).evaluate((panel) => {
    const seen: string[] = [];
    (window as unknown as { __submissionTexts: string[] }).__submissionTexts = seen;
    const take = () => {
      const text = panel.textContent ?? "";
      if (seen[seen.length - 1] !== text) seen.push(text);
    };
    take();
    new MutationObserver(take).observe(panel, { subtree: true, childList: true, characterData: true });
  });
  return () => page.evaluate(() => (window as unknown as { __submissionTexts: string[] }).__submissionTexts.slice());
}

// ---- steps -----------------------------------------------------------------

/** createTeam creates a team from the start screen and waits for the app. */
export async function createTeam(page: Page, teamName: string, yourName: string): Promise<void> {
  await page.goto("/");
  await expect(page.getByRole("heading", { name: "handoff", exact: true })).toBeVisible();
  const form = page.getByRole("form", { name: "Create a team", exact: true });
  await form.getByRole("textbox", { name: "Team name", exact: true }).fill(teamName);
  await form.getByRole("textbox", { name: "Your name", exact: true }).fill(yourName);
  await form.getByRole("button", { name: "Create team", exact: true }).click();
  await expect(ui.banner(page)).toContainText(teamName);
  await expect(ui.banner(page)).toContainText(yourName);
  await expect(ui.connection(page)).toHaveText("Connected");
}

/** inviteLink presses "Invite" and reads the read-only "Invite link". */
export async function inviteLink(page: Page): Promise<string> {
  await ui.banner(page).getByRole("button", { name: "Invite", exact: true }).click();
  const box = page.getByRole("textbox", { name: "Invite link", exact: true });
  await expect(box).toBeVisible();
  await expect(box).not.toBeEditable();
  await expect(box).toHaveValue(/\/join#.+/);
  return box.inputValue();
}

/** joinTeam opens an invite link and joins under a name. */
export async function joinTeam(page: Page, link: string, teamName: string, yourName: string): Promise<void> {
  await page.goto(link);
  const form = page.getByRole("form", { name: "Join team", exact: true });
  await expect(form).toBeVisible();
  await expect(form).toContainText(teamName);
  await form.getByRole("textbox", { name: "Your name", exact: true }).fill(yourName);
  await form.getByRole("button", { name: "Join team", exact: true }).click();
  await expect(ui.banner(page)).toContainText(teamName);
  await expect(ui.banner(page)).toContainText(yourName);
  await expect(ui.connection(page)).toHaveText("Connected");
}

/** newDraft starts a draft and gives it a title. */
export async function newDraft(page: Page, title: string): Promise<string> {
  await ui.nav(page).getByRole("button", { name: "New draft", exact: true }).click();
  await expect(page).toHaveURL(/\/drafts\/[^/]+$/);
  await expect(ui.title(page)).toHaveValue("Untitled order");
  await expect(ui.title(page)).toBeEditable();
  await ui.title(page).fill(title);
  await expect(ui.saveState(page)).toHaveText("All changes saved");
  await expect(draftLink(page, title, "Editing")).toBeVisible();
  return draftIdOf(page);
}

/** draftIdOf reads the open draft's id from the address. */
export function draftIdOf(page: Page): string {
  const m = /\/drafts\/([^/?#]+)/.exec(page.url());
  if (!m?.[1]) throw new Error(`no draft open at ${page.url()}`);
  return decodeURIComponent(m[1]);
}

/** draftLink is a draft's link in the navigation, named by its title and state. */
export function draftLink(page: Page, title: string, state: "Editing" | "Submitted"): Locator {
  return ui.nav(page).getByRole("link", { name: `${title} ${state}`, exact: true });
}

/** openDraft opens a draft from the navigation. */
export async function openDraft(page: Page, title: string): Promise<void> {
  await draftLink(page, title, "Editing").click();
  await expect(ui.title(page)).toHaveValue(title);
}

/**
 * openDraftOf opens the draft another member has open, by its address (the
 * drafts list of a member who was signed in before the draft was made
 * learns of it only at its next refresh).
 */
export async function openDraftOf(page: Page, other: Page): Promise<void> {
  const id = draftIdOf(other);
  await page.goto(`/drafts/${encodeURIComponent(id)}`);
  await expect(ui.title(page)).toHaveValue(await ui.title(other).inputValue());
  await expect(ui.connection(page)).toHaveText("Connected");
}

/**
 * sharedDraft makes a draft on a with the given [product, quantity] items,
 * waits until they are saved and opens the same draft on b.
 */
export async function sharedDraft(a: Page, b: Page, title: string, items: [string, string][]): Promise<string> {
  const draftId = await newDraft(a, title);
  for (const [product, quantity] of items) {
    await ui.quantity(await addItem(a, product)).fill(quantity);
  }
  await expect(ui.saveState(a)).toHaveText("All changes saved");
  await openDraftOf(b, a);
  return draftId;
}

/** addItem adds one of a product and waits until it shows. */
export async function addItem(page: Page, productName: string): Promise<Locator> {
  await ui.product(page).selectOption({ label: productName });
  await ui.addItem(page).click();
  const row = ui.row(page, productName);
  await expect(row).toHaveCount(1);
  return row;
}

async function newMember(browser: Browser, name: string): Promise<Member> {
  const context = await browser.newContext();
  const page = await context.newPage();
  return { name, context, page };
}

interface WorkerFixtures {
  /**
   * serverFlags, set with test.use() at the top of a spec file, gives that
   * file a server of its own: `bin/handoff serve` with these extra flags, on
   * a fresh database, for as long as the worker runs the file. null (the
   * default) is the suite's shared server from global-setup.ts.
   */
  serverFlags: readonly string[] | null;
  /** serverURL is the address of the server the tests of this worker use. */
  serverURL: string;
}

interface Fixtures {
  /** teamName is unique to the test. */
  teamName: string;
  /** alice created the team; she is signed in on the start page of the app. */
  alice: Member;
  /** bob joined alice's team by her invite link. */
  bob: Member;
}

export const test = base.extend<Fixtures, WorkerFixtures>({
  serverFlags: [null, { scope: "worker", option: true }],
  serverURL: [
    async ({ serverFlags }, use, workerInfo) => {
      if (serverFlags === null) {
        // global-setup.ts starts the server and names it before any worker starts.
        const url = process.env.HANDOFF_E2E_URL;
        if (!url) throw new Error("HANDOFF_E2E_URL is not set: global-setup.ts did not run");
        await use(url);
        return;
      }
      const label = `bin/handoff serve ${serverFlags.join(" ")}`;
      const server = await startServer({ flags: serverFlags, label });
      try {
        await use(server.url);
      } finally {
        if (!server.alive()) console.error(`e2e: ${label} stopped during the tests; its log ends with:\n${server.logTail()}`);
        const name = serverFlags.join(" ").replace(/[^a-z0-9]+/gi, "-").replace(/^-+|-+$/g, "");
        await server.stop(`handoff-server-${name}-w${workerInfo.workerIndex}.log`);
      }
    },
    { scope: "worker", timeout: 70_000 },
  ],
  baseURL: async ({ serverURL }, use) => {
    await use(serverURL);
  },
  teamName: async ({}, use) => {
    await use(unique("Team"));
  },
  alice: async ({ browser, teamName }, use) => {
    const m = await newMember(browser, "Alice");
    await createTeam(m.page, teamName, m.name);
    await use(m);
    await m.context.close();
  },
  bob: async ({ browser, alice, teamName }, use) => {
    const link = await inviteLink(alice.page);
    const m = await newMember(browser, "Bob");
    await joinTeam(m.page, link, teamName, m.name);
    await use(m);
    await m.context.close();
  },
});
