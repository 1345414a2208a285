// A payment provider that stays unavailable: after its tries the operation
// fails as retryable, every member is offered "Retry", and one press (a
// double press is still one) runs the order again until it completes. Once
// the draft has changed, there is nothing to retry any more.
//
// The server is this file's own: the simulated provider fails the first six
// calls of every operation and the workflow gives up after five tries, so a
// first run fails and its retry goes through at its second try.

import type { Page } from "@playwright/test";
import {
  test,
  expect,
  ui,
  sharedDraft,
  draftLink,
  draftOf,
  operationsOf,
  watchSubmissions,
  type ApiOperation,
} from "./fixtures";

test.use({ serverFlags: ["--payment-fail-first", "6", "--payment-max-tries", "5"] });

const UNAVAILABLE = /The payment provider could not be reached after 5 tries/;

/** submitUntilUnavailable submits the open draft and waits until every page shows it failed, retryable. */
async function submitUntilUnavailable(submitter: Page, pages: Page[], title: string, draftId: string): Promise<ApiOperation> {
  await ui.submit(submitter).click();
  for (const p of pages) {
    const op = ui.operations(p, title);
    await expect(op).toHaveCount(1);
    await expect(op).toContainText(UNAVAILABLE, { timeout: 20_000 });
    await expect(ui.step(op, "Take payment")).toContainText("Failed");
    await expect(ui.step(op, "Take payment")).toContainText("5 attempts");
    await expect(ui.step(op, "Confirm order")).toContainText("Skipped");
    await expect(ui.retry(op)).toBeEnabled();
    await expect(draftLink(p, title, "Editing")).toBeVisible();
  }
  const [op] = await operationsOf(submitter, draftId);
  expect(op!.status).toBe("failed");
  expect(op!.error?.code).toBe("payment_unavailable");
  expect(op!.error?.retryable).toBe(true);
  expect(op!.retryable).toBe(true);
  expect(op!.attempt ?? 0).toBe(0);
  return op!;
}

test("a payment that stays unavailable is offered for retry to every member, and one press completes it", async ({ alice, bob }) => {
  const a = alice.page;
  const b = bob.page;
  const title = "Batteries for the lab";
  const draftId = await sharedDraft(a, b, title, [["AA batteries, 24 pack", "3"]]);
  await expect(ui.draft(b)).toContainText("Total €47.97");

  const failed = await submitUntilUnavailable(a, [a, b], title, draftId);
  for (const p of [a, b]) {
    await expect(ui.draft(p)).toContainText("The last submission failed.");
    await expect(ui.draft(p)).toContainText(UNAVAILABLE);
  }
  const seen = { alice: await watchSubmissions(a), bob: await watchSubmissions(b) };

  // Bob presses Retry twice in a row.
  await ui.retry(ui.operations(b, title)).dblclick();

  for (const p of [a, b]) {
    const op = ui.operations(p, title);
    await expect(op).toHaveCount(1);
    await expect(op).toContainText("Completed", { timeout: 20_000 });
    await expect(op).toContainText(/Order HO-\d+/);
    await expect(op).toContainText("Total €47.97");
    // The retry ran every step again; its payment failed once more (the
    // provider's sixth call) and went through at the next.
    for (const name of ["Validate and price", "Reserve stock", "Confirm order"]) await expect(ui.step(op, name)).toContainText("Done");
    await expect(ui.step(op, "Take payment")).toContainText("Done");
    await expect(ui.step(op, "Take payment")).toContainText("2 attempts");
    await expect(op).not.toContainText(UNAVAILABLE);
    await expect(ui.retry(op)).toHaveCount(0);
    await expect(op.getByRole("alert")).toHaveCount(0);
    // The draft is frozen again.
    await expect(draftLink(p, title, "Submitted")).toBeVisible();
    await expect(ui.draft(p)).toContainText("read-only");
    await expect(ui.submit(p)).toBeDisabled();
  }

  // Both watched it go back to Pending or Processing after the failure, then complete.
  for (const [who, read] of Object.entries(seen)) {
    const texts = await read();
    expect(texts[0], `${who} started from the failure`).toMatch(UNAVAILABLE);
    const again = texts.findIndex((t) => /Pending|Processing/.test(t));
    const completed = texts.findIndex((t) => t.includes("Completed"));
    expect(again, `${who} saw it Pending or Processing again`).toBeGreaterThan(0);
    expect(completed, `${who} saw it Completed after that`).toBeGreaterThan(again);
  }

  // One operation, retried exactly once; the draft names it and is submitted.
  const ops = await operationsOf(a, draftId);
  expect(ops).toHaveLength(1);
  const [op] = ops;
  expect(op!.id).toBe(failed.id);
  expect(op!.status).toBe("completed");
  expect(op!.attempt).toBe(1);
  expect(op!.seq).toBeGreaterThan(failed.seq);
  expect(op!.retryable).toBe(false);
  const draft = await draftOf(a, draftId);
  expect(draft.state).toBe("submitted");
  expect(draft.submission?.operation_id).toBe(op!.id);
  // Nothing left to retry.
  const late = await b.request.post(`/api/operations/${op!.id}/retry`, { data: {} });
  expect(late.status()).toBe(409);
  expect(((await late.json()) as { error: { code: string } }).error.code).toBe("not_retryable");
  expect((await operationsOf(a, draftId))[0]!.attempt).toBe(1);
});

test("once the draft has changed after the failure, Retry is no longer offered and is refused with the reason", async ({ alice, bob }) => {
  const a = alice.page;
  const b = bob.page;
  const title = "Whiteboard supplies";
  const markers = "Whiteboard markers, 4 colours";
  const draftId = await sharedDraft(a, b, title, [[markers, "2"]]);
  await expect(ui.quantity(ui.row(b, markers))).toHaveValue("2");
  const failed = await submitUntilUnavailable(a, [a, b], title, draftId);

  // Bob changes the draft: Retry is gone for both of them at once.
  await ui.quantity(ui.row(b, markers)).fill("3");
  await expect(ui.saveState(b)).toHaveText("All changes saved");
  await expect(ui.quantity(ui.row(a, markers))).toHaveValue("3");
  for (const p of [a, b]) {
    await expect(ui.retry(ui.operations(p, title))).toHaveCount(0);
    await expect(ui.operations(p, title)).toContainText(UNAVAILABLE);
  }

  // The server agrees: a retry now is refused with the reason, and nothing runs.
  const [changed] = await operationsOf(b, draftId);
  expect(changed!.retryable).toBe(false);
  const refused = await a.request.post(`/api/operations/${failed.id}/retry`);
  expect(refused.status()).toBe(409);
  const body = (await refused.json()) as { error: { code: string; message: string } };
  expect(body.error.code).toBe("not_retryable");
  expect(body.error.message).toBe("The draft has changed since this operation failed; submit it again instead.");
  const [after] = await operationsOf(a, draftId);
  expect(after!.status).toBe("failed");
  expect(after!.attempt ?? 0).toBe(0);
  // The edit that took Retry away was itself a change of the operation.
  expect(after!.seq).toBeGreaterThan(failed.seq);
  expect(after!.seq).toBe(changed!.seq);
  expect((await draftOf(a, draftId)).state).toBe("editing");
  await a.reload();
  await expect(ui.operations(a, title)).toContainText(UNAVAILABLE);
  await expect(ui.retry(ui.operations(a, title))).toHaveCount(0);
  await expect(draftLink(a, title, "Editing")).toBeVisible();
});
