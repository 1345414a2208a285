// Going offline: the banner says so, edits stay on screen as pending, and
// they are saved once the connection is back.

import { test, expect, ui, newDraft, addItem } from "./fixtures";

test("edits made offline stay on screen as pending and are saved on reconnect", async ({ alice, bob }, testInfo) => {
  const a = alice.page;
  const b = bob.page;
  await newDraft(a, "Offline order");
  const aRow = await addItem(a, "AA batteries, 24 pack");
  await expect(ui.saveState(a)).toHaveText("All changes saved");
  await b.goto(a.url());
  const bRow = ui.row(b, "AA batteries, 24 pack");
  await expect(bRow).toHaveCount(1);

  await alice.context.setOffline(true);
  await expect(ui.connection(a)).toHaveText(/^(Offline|Reconnecting\.\.\.)$/);

  await ui.title(a).fill("Offline order, edited on the train");
  await ui.quantity(aRow).fill("3");
  await ui.note(aRow).fill("Rechargeable if possible");
  await addItem(a, "USB-C cable, 2 m");

  // On Alice's screen: everything she typed, marked as not saved yet.
  await expect(ui.title(a)).toHaveValue("Offline order, edited on the train");
  await expect(ui.quantity(aRow)).toHaveValue("3");
  await expect(ui.note(aRow)).toHaveValue("Rechargeable if possible");
  await expect(ui.row(a, "USB-C cable, 2 m")).toHaveCount(1);
  await expect(ui.saveState(a)).toHaveText("Saving...");
  await expect(ui.connection(a)).toHaveText(/^(Offline|Reconnecting\.\.\.)$/);
  await testInfo.attach("offline, edits pending", { body: await a.screenshot({ fullPage: true }), contentType: "image/png" });
  // Bob has heard nothing of it.
  await expect(ui.title(b)).toHaveValue("Offline order");
  await expect(ui.quantity(bRow)).toHaveValue("1");
  await expect(ui.row(b, "USB-C cable, 2 m")).toHaveCount(0);

  await alice.context.setOffline(false);
  await expect(ui.connection(a)).toHaveText("Connected");
  await expect(ui.saveState(a)).toHaveText("All changes saved");

  // Bob gets all of it live...
  await expect(ui.title(b)).toHaveValue("Offline order, edited on the train");
  await expect(ui.quantity(bRow)).toHaveValue("3");
  await expect(ui.note(bRow)).toHaveValue("Rechargeable if possible");
  await expect(ui.row(b, "USB-C cable, 2 m")).toHaveCount(1);

  // ...and it is on the server: a reload shows it.
  await a.reload();
  await expect(ui.connection(a)).toHaveText("Connected");
  await expect(ui.title(a)).toHaveValue("Offline order, edited on the train");
  const row = ui.row(a, "AA batteries, 24 pack");
  await expect(ui.quantity(row)).toHaveValue("3");
  await expect(ui.note(row)).toHaveValue("Rechargeable if possible");
  await expect(ui.row(a, "USB-C cable, 2 m")).toHaveCount(1);
  await expect(ui.saveState(a)).toHaveText("All changes saved");
});
