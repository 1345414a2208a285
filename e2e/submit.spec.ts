// The main flow of the product: a team puts an order together, one member
// submits it (with a double click), and both watch it being processed in the
// Submissions panel. The draft is read-only afterwards and a reload keeps
// everything.

import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Page } from "@playwright/test";
import {
  test,
  expect,
  ui,
  createTeam,
  inviteLink,
  joinTeam,
  newDraft,
  openDraft,
  addItem,
  draftIdOf,
  draftLink,
  unique,
  operationsOf,
  watchSubmissions,
  type ApiOperation,
} from "./fixtures";

test("a team builds an order, submits it once with a double click, and both watch it complete", async ({ browser }, testInfo) => {
  const teamName = unique("Office team");
  const title = "Office supplies, week 12";
  const aliceContext = await browser.newContext();
  const bobContext = await browser.newContext();
  try {
    const a = await aliceContext.newPage();
    const b = await bobContext.newPage();

    // Alice starts the team and the draft, then invites Bob.
    await createTeam(a, teamName, "Alice");
    const draftId = await newDraft(a, title);
    // Nothing to submit yet.
    await expect(ui.submit(a)).toBeDisabled();
    const aPaper = await addItem(a, "Printer paper A4, 500 sheets");
    await ui.quantity(aPaper).fill("4");
    await expect(ui.saveState(a)).toHaveText("All changes saved");
    const link = await inviteLink(a);
    await joinTeam(b, link, teamName, "Bob");

    // Bob finds the draft in the list and adds to it.
    await openDraft(b, title);
    await expect(ui.quantity(ui.row(b, "Printer paper A4, 500 sheets"))).toHaveValue("4");
    const bNotes = await addItem(b, "Sticky notes, 12 pads");
    await ui.quantity(bNotes).fill("2");
    await ui.note(bNotes).fill("Yellow");
    const aNotes = ui.row(a, "Sticky notes, 12 pads");
    await expect(ui.quantity(aNotes)).toHaveValue("2");
    await expect(ui.note(aNotes)).toHaveValue("Yellow");
    // 4 x 5.99 + 2 x 7.99
    const total = "€39.94";
    for (const p of [a, b]) {
      await expect(ui.saveState(p)).toHaveText("All changes saved");
      await expect(ui.draft(p)).toContainText(`Total ${total}`);
      await expect(ui.connection(p)).toHaveText("Connected");
      await expect(ui.presence(p).getByRole("listitem")).toHaveCount(2);
      await expect(ui.operations(p, title)).toHaveCount(0);
    }
    const texts = { a: await watchSubmissions(a), b: await watchSubmissions(b) };

    // Alice double-clicks "Submit order".
    await expect(ui.submit(a)).toBeEnabled();
    await ui.submit(a).dblclick();

    // Both see exactly one submission go from Pending to Completed, with the result.
    for (const p of [a, b]) {
      const ops = ui.operations(p, title);
      await expect(ops).toHaveCount(1);
      await expect(ops).toContainText("Completed", { timeout: 20_000 });
      await expect(ops).toContainText("Submitted by Alice");
      await expect(ops).toContainText(/Order HO-\d+/);
      await expect(ops).toContainText(`Total ${total}`);
      const steps = ops.getByRole("list", { name: "Steps", exact: true }).getByRole("listitem");
      await expect(steps).not.toHaveCount(0);
      // A completed operation has run every step (or skipped it).
      for (const step of await steps.all()) await expect(step).toContainText(/Done|Skipped/);
    }
    for (const [who, read] of Object.entries(texts)) {
      const seen = await read();
      const pending = seen.findIndex((t) => t.includes(title) && t.includes("Pending"));
      const completed = seen.findIndex((t) => t.includes(title) && t.includes("Completed"));
      expect(pending, `${who} saw Pending`).toBeGreaterThanOrEqual(0);
      expect(completed, `${who} saw Completed after Pending`).toBeGreaterThan(pending);
    }
    const orderNumber = /Order (HO-\d+)/.exec((await ui.operations(a, title).textContent()) ?? "")?.[1];
    await expect(ui.operations(b, title)).toContainText(`Order ${orderNumber}`);

    // The server holds one operation for the draft, the same for both members.
    const [op] = await operationsOf(a, draftId);
    expect(await operationsOf(a, draftId)).toHaveLength(1);
    expect(await operationsOf(b, draftId)).toHaveLength(1);
    expect(op!.status).toBe("completed");
    expect(op!.submitted_by.display_name).toBe("Alice");
    expect(op!.result?.order_number).toBe(orderNumber);
    expect(op!.result?.total_cents).toBe(3994);

    // Submitting the same revision again (a retry, a second tab) changes nothing.
    const again = await b.request.post(`/api/drafts/${draftId}/submit`, { data: { revision: op!.revision } });
    expect(again.status()).toBe(200);
    expect(((await again.json()) as { operation: ApiOperation }).operation.id).toBe(op!.id);
    expect(await operationsOf(a, draftId)).toHaveLength(1);

    // The draft is read-only now, and says it was submitted.
    for (const p of [a, b]) await expectSubmittedDraft(p, title);
    await expect(ui.operations(a, title)).toHaveCount(1);

    // A reload keeps everything: the items, the state and the submission.
    for (const p of [a, b]) {
      await p.reload();
      await expect(ui.connection(p)).toHaveText("Connected");
      await expect(ui.title(p)).toHaveValue(title);
      await expect(ui.quantity(ui.row(p, "Printer paper A4, 500 sheets"))).toHaveValue("4");
      await expect(ui.quantity(ui.row(p, "Sticky notes, 12 pads"))).toHaveValue("2");
      await expect(ui.note(ui.row(p, "Sticky notes, 12 pads"))).toHaveValue("Yellow");
      await expect(ui.draft(p)).toContainText(`Total ${total}`);
      await expectSubmittedDraft(p, title);
      const ops = ui.operations(p, title);
      await expect(ops).toHaveCount(1);
      await expect(ops).toContainText("Completed");
      await expect(ops).toContainText(`Order ${orderNumber}`);
      await expect(ops).toContainText(`Total ${total}`);
    }
    expect(draftIdOf(a)).toBe(draftId);

    // The final screen, kept with the test's results: attached to the test
    // (in the HTML report) and as test-results/main-flow-final-screen*.png.
    for (const [who, p] of [
      ["alice", a],
      ["bob", b],
    ] as const) {
      const shot = await p.screenshot({ fullPage: true });
      await testInfo.attach(`final screen (${who})`, { body: shot, contentType: "image/png" });
      const file = who === "alice" ? "main-flow-final-screen.png" : "main-flow-final-screen-bob.png";
      writeFileSync(join(testInfo.project.outputDir, file), shot);
    }
  } finally {
    await aliceContext.close();
    await bobContext.close();
  }
});

async function expectSubmittedDraft(p: Page, title: string): Promise<void> {
  await expect(ui.draft(p)).toContainText("Submitted");
  await expect(ui.draft(p)).toContainText("read-only");
  await expect(draftLink(p, title, "Submitted")).toBeVisible();
  await expect(ui.title(p)).not.toBeEditable();
  for (const row of await ui.items(p).getByRole("row").filter({ has: p.getByRole("spinbutton") }).all()) {
    await expect(ui.quantity(row)).not.toBeEditable();
    await expect(ui.note(row)).not.toBeEditable();
    await expect(ui.remove(row)).toBeDisabled();
  }
  await expect(ui.product(p)).toBeDisabled();
  await expect(ui.addItem(p)).toBeDisabled();
  await expect(ui.submit(p)).toBeDisabled();
}
