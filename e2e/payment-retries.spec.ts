// A payment provider that fails for a moment: the workflow tries again by
// itself, every member watches "Take payment" count its attempts (with what
// went wrong last) while it runs, and the order completes.
//
// The server is this file's own: the simulated provider fails the first two
// calls of every operation, and takes a moment over each call, so each try
// is on screen for a while.

import { test, expect, ui, sharedDraft, draftLink, operationsOf, watchSubmissions } from "./fixtures";

test.use({ serverFlags: ["--payment-fail-first", "2", "--payment-latency", "150ms"] });

test("a payment that fails twice is tried again until it goes through, and every member sees the attempts", async ({
  alice,
  bob,
}) => {
  const a = alice.page;
  const b = bob.page;
  const title = "Cables for the meeting rooms";
  const draftId = await sharedDraft(a, b, title, [["USB-C cable, 2 m", "6"]]);
  await expect(ui.draft(b)).toContainText("Total €89.40");
  const seen = { alice: await watchSubmissions(a), bob: await watchSubmissions(b) };

  await ui.submit(a).click();
  for (const p of [a, b]) {
    const op = ui.operations(p, title);
    await expect(op).toHaveCount(1);
    await expect(op).toContainText("Completed", { timeout: 20_000 });
    await expect(op).toContainText("Total €89.40");
    const payment = ui.step(op, "Take payment");
    await expect(payment).toContainText("Done");
    await expect(payment).toContainText("3 attempts");
    // Steps that went through at once do not count attempts.
    for (const name of ["Validate and price", "Reserve stock", "Confirm order"]) {
      await expect(ui.step(op, name)).toContainText("Done");
      await expect(ui.step(op, name)).not.toContainText("attempts");
    }
    // It went through in the end: no failure, nothing to retry.
    await expect(op.getByText("Failed", { exact: true })).toHaveCount(0);
    await expect(ui.retry(op)).toHaveCount(0);
    await expect(draftLink(p, title, "Submitted")).toBeVisible();
  }

  // While it ran, both saw the step running again after each failed try,
  // with the count of attempts and the last error.
  for (const [who, read] of Object.entries(seen)) {
    const texts = await read();
    for (const attempts of [2, 3]) {
      const running = new RegExp(`Take payment\\s*Running · ${attempts} attempts — last try: payment provider temporarily unavailable`);
      expect(
        texts.some((t) => running.test(t) && !t.includes("Completed")),
        `${who} saw "Take payment" running at attempt ${attempts} with the last error`,
      ).toBe(true);
    }
  }

  const [op] = await operationsOf(a, draftId);
  expect(op!.status).toBe("completed");
  expect(op!.error).toBeNull();
  const payment = op!.steps.find((s) => s.name === "Take payment");
  expect(payment?.status).toBe("done");
  expect(payment?.attempts).toBe(3);
  expect(op!.attempt ?? 0).toBe(0);
});
