// Orders the workflow refuses: one that wants more stock than there is, and
// one whose payment is declined. Both fail with the reason in plain words,
// for every member, in Submissions and on the draft; the draft opens for
// editing again, and once fixed the next submission goes through.
//
// The server is this file's own: the simulated payment provider declines
// every charge above €5,000.00. Stock is the server's, shared by every team
// on it (pkg/catalog/catalog.json seeds it), so each test here orders
// products no other test of this file touches.

import type { Page } from "@playwright/test";
import { test, expect, ui, sharedDraft, draftLink, draftOf, operationsOf } from "./fixtures";

test.use({ serverFlags: ["--payment-decline-above", "500000"] });

/** expectFailed checks an operation shows as failed with its reason, and that there is nothing to retry. */
async function expectFailed(p: Page, title: string, failedStep: string, reason: string): Promise<void> {
  const op = ui.operations(p, title).first();
  await expect(op).toContainText(reason, { timeout: 20_000 });
  // "Failed" twice: the operation's status and its failed step's.
  await expect(op.getByText("Failed", { exact: true })).toHaveCount(2);
  await expect(ui.step(op, failedStep)).toContainText("Failed");
  await expect(ui.step(op, "Confirm order")).toContainText("Skipped");
  await expect(ui.retry(op)).toHaveCount(0);
}

/** expectReopened checks the draft is open for editing again and says why its submission failed. */
async function expectReopened(p: Page, title: string, reason: string): Promise<void> {
  await expect(draftLink(p, title, "Editing")).toBeVisible();
  await expect(ui.draft(p)).toContainText("The last submission failed.");
  await expect(ui.draft(p)).toContainText(reason);
  await expect(ui.title(p)).toBeEditable();
  await expect(ui.product(p)).toBeEnabled();
  for (const row of await ui.items(p).getByRole("row").filter({ has: p.getByRole("spinbutton") }).all()) {
    await expect(ui.quantity(row)).toBeEditable();
  }
  await expect(ui.submit(p)).toBeEnabled();
}

test("an order that runs out of stock fails with the reason, opens for editing again, and goes through once fixed", async ({
  alice,
  bob,
}) => {
  const a = alice.page;
  const b = bob.page;
  const title = "Fruit for the whole floor";
  const fruit = "Fruit box, 5 kg";
  const draftId = await sharedDraft(a, b, title, [[fruit, "41"]]);
  await expect(ui.quantity(ui.row(b, fruit))).toHaveValue("41");

  // 41 boxes, 40 in stock.
  await ui.submit(a).click();
  const reason = "Not enough stock. Fruit box, 5 kg: 41 wanted, 40 left.";
  for (const p of [a, b]) {
    await expect(ui.operations(p, title)).toHaveCount(1);
    await expectFailed(p, title, "Reserve stock", reason);
    await expect(ui.step(ui.operations(p, title), "Validate and price")).toContainText("Done");
    await expect(ui.step(ui.operations(p, title), "Take payment")).toContainText("Skipped");
    await expectReopened(p, title, reason);
  }
  const [failed] = await operationsOf(a, draftId);
  expect(failed!.status).toBe("failed");
  expect(failed!.error?.code).toBe("out_of_stock");
  expect(failed!.retryable).toBe(false);
  const reopened = await draftOf(a, draftId);
  expect(reopened.state).toBe("editing");
  expect(reopened.revision).toBeGreaterThan(failed!.revision);
  expect(reopened.submission?.operation_id).toBe(failed!.id);

  // Bob takes what there is and submits again: a new operation that completes.
  const bFruit = ui.row(b, fruit);
  await ui.quantity(bFruit).fill("40");
  await expect(ui.saveState(b)).toHaveText("All changes saved");
  await expect(ui.quantity(ui.row(a, fruit))).toHaveValue("40");
  await ui.submit(b).click();
  for (const p of [a, b]) {
    const ops = ui.operations(p, title);
    await expect(ops).toHaveCount(2);
    // Newest first: Bob's, completed; then Alice's, still failed with its reason.
    await expect(ops.first()).toContainText("Completed", { timeout: 20_000 });
    await expect(ops.first()).toContainText("Submitted by Bob");
    await expect(ops.first()).toContainText(/Order HO-\d+/);
    await expect(ops.first()).toContainText("Total €1,280.00");
    await expect(ops.last()).toContainText("Submitted by Alice");
    await expect(ops.last()).toContainText(reason);
    await expect(draftLink(p, title, "Submitted")).toBeVisible();
    await expect(ui.draft(p)).toContainText("read-only");
    await expect(ui.draft(p)).not.toContainText("The last submission failed.");
    await expect(ui.quantity(ui.row(p, fruit))).not.toBeEditable();
  }
  const [second, first] = await operationsOf(b, draftId);
  expect(first!.id).toBe(failed!.id);
  expect(second!.id).not.toBe(failed!.id);
  expect(second!.message_id).not.toBe(failed!.message_id);
  expect(second!.status).toBe("completed");
  expect(second!.result?.total_cents).toBe(128_000);
  expect((await draftOf(b, draftId)).submission?.operation_id).toBe(second!.id);
});

test("a declined payment fails with the reason, releases the stock, and the draft can be fixed and submitted", async ({
  alice,
  bob,
}) => {
  const a = alice.page;
  const b = bob.page;
  const title = "Offsite snacks and coffee";
  const nuts = "Mixed nuts, 1 kg";
  const beans = "Espresso beans, 1 kg";
  // Every bag of nuts there is (80), and coffee enough to go over €5,000.
  const draftId = await sharedDraft(a, b, title, [
    [nuts, "80"],
    [beans, "200"],
  ]);
  await expect(ui.draft(b)).toContainText("Total €6,380.00");

  await ui.submit(a).click();
  const reason = "The payment was declined. The reserved stock was released.";
  for (const p of [a, b]) {
    await expect(ui.operations(p, title)).toHaveCount(1);
    await expectFailed(p, title, "Take payment", reason);
    // The stock was reserved before the payment was asked for.
    await expect(ui.step(ui.operations(p, title), "Reserve stock")).toContainText("Done");
    await expectReopened(p, title, reason);
  }
  const [declined] = await operationsOf(a, draftId);
  expect(declined!.status).toBe("failed");
  expect(declined!.error?.code).toBe("payment_declined");
  expect(declined!.error?.retryable ?? false).toBe(false);
  expect(declined!.retryable).toBe(false);
  const retry = await a.request.post(`/api/operations/${declined!.id}/retry`, { data: {} });
  expect(retry.status()).toBe(409);
  expect(((await retry.json()) as { error: { code: string } }).error.code).toBe("not_retryable");

  // Bob drops the coffee and submits the nuts alone: all 80 bags, which only
  // go through if the declined order gave its reservation back.
  await ui.remove(ui.row(b, beans)).click();
  await expect(ui.row(b, beans)).toHaveCount(0);
  await expect(ui.saveState(b)).toHaveText("All changes saved");
  await expect(ui.row(a, beans)).toHaveCount(0);
  await expect(ui.draft(b)).toContainText("Total €1,480.00");
  await ui.submit(b).click();
  for (const p of [a, b]) {
    const ops = ui.operations(p, title);
    await expect(ops).toHaveCount(2);
    await expect(ops.first()).toContainText("Completed", { timeout: 20_000 });
    await expect(ops.first()).toContainText("Submitted by Bob");
    await expect(ops.first()).toContainText("Total €1,480.00");
    await expect(ops.last()).toContainText(reason);
    await expect(draftLink(p, title, "Submitted")).toBeVisible();
  }
  const [paid] = await operationsOf(b, draftId);
  expect(paid!.status).toBe("completed");
  expect(paid!.result?.total_cents).toBe(148_000);
});
