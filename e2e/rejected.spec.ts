// Edits the server refuses: the reason shows in "Save state" and the screen
// rolls back to what the server holds.

import { test, expect, ui, newDraft, addItem } from "./fixtures";

const OFFLINE_OR_RECONNECTING = /^(Offline|Reconnecting\.\.\.)$/;

test("a quantity over 10000 is refused with the reason and rolled back", async ({ alice, bob }) => {
  const a = alice.page;
  const b = bob.page;
  await newDraft(a, "Too much coffee");
  const aRow = await addItem(a, "Espresso beans, 1 kg");
  await ui.quantity(aRow).fill("5");
  await expect(ui.saveState(a)).toHaveText("All changes saved");
  await b.goto(a.url());
  const bRow = ui.row(b, "Espresso beans, 1 kg");
  await expect(ui.quantity(bRow)).toHaveValue("5");

  await ui.quantity(aRow).fill("20000");
  await expect(ui.saveState(a)).toHaveText(/quantity must be a whole number from 1 to 10000/i);
  await expect(ui.quantity(aRow)).toHaveValue("5");
  await expect(aRow).toContainText("€122.50");
  // Nothing changed for anyone.
  await expect(ui.quantity(bRow)).toHaveValue("5");
  await expect(ui.saveState(b)).toHaveText("All changes saved");

  // The next edit is accepted, and the reason gives way.
  await ui.quantity(aRow).fill("10000");
  await expect(ui.saveState(a)).toHaveText("All changes saved");
  await expect(ui.quantity(bRow)).toHaveValue("10000");

  await a.reload();
  await expect(ui.quantity(ui.row(a, "Espresso beans, 1 kg"))).toHaveValue("10000");
});

test("editing an item another member removed meanwhile is refused and rolled back", async ({ alice, bob }) => {
  const a = alice.page;
  const b = bob.page;
  await newDraft(a, "Who removed the pens");
  await addItem(a, "Ballpoint pens, blue, 10 pack");
  const aKeep = await addItem(a, "Notebook A5, dotted");
  await expect(ui.saveState(a)).toHaveText("All changes saved");
  await b.goto(a.url());
  const bPens = ui.row(b, "Ballpoint pens, blue, 10 pack");
  await expect(bPens).toHaveCount(1);

  // Alice's connection drops while she edits the pens: her edit waits...
  await alice.context.setOffline(true);
  await expect(ui.connection(a)).toHaveText(OFFLINE_OR_RECONNECTING);
  const aPens = ui.row(a, "Ballpoint pens, blue, 10 pack");
  await ui.note(aPens).fill("Black ones if blue is out");
  await ui.quantity(aPens).fill("4");
  await expect(ui.note(aPens)).toHaveValue("Black ones if blue is out");
  await expect(ui.saveState(a)).toHaveText("Saving...");

  // ...while Bob removes the pens.
  await ui.remove(bPens).click();
  await expect(bPens).toHaveCount(0);
  await expect(ui.saveState(b)).toHaveText("All changes saved");

  // Back online, Alice's edit of the removed item is refused and undone.
  await alice.context.setOffline(false);
  await expect(ui.connection(a)).toHaveText("Connected");
  await expect(ui.saveState(a)).toHaveText(/no longer in the draft/i);
  await expect(aPens).toHaveCount(0);
  // The draft itself is fine, and still editable.
  await expect(aKeep).toHaveCount(1);
  await expect(ui.title(a)).toBeEditable();
  await ui.quantity(aKeep).fill("2");
  await expect(ui.saveState(a)).toHaveText("All changes saved");
  await expect(ui.quantity(ui.row(b, "Notebook A5, dotted"))).toHaveValue("2");

  await a.reload();
  await expect(ui.row(a, "Ballpoint pens, blue, 10 pack")).toHaveCount(0);
  await expect(ui.quantity(ui.row(a, "Notebook A5, dotted"))).toHaveValue("2");
});
