// Live co-editing and presence between two members of one team.

import { test, expect, ui, newDraft, addItem, draftLink } from "./fixtures";

test("members see each other's items, quantities, notes and titles live", async ({ alice, bob }) => {
  const a = alice.page;
  const b = bob.page;
  const title = "Kitchen restock";
  await newDraft(a, title);
  // Alice sends Bob the draft's address.
  await b.goto(a.url());
  await expect(ui.title(b)).toHaveValue(title);
  await expect(ui.connection(b)).toHaveText("Connected");

  // Items added by one show up for the other.
  const aOat = await addItem(a, "Oat milk, 1 l");
  const bOat = ui.row(b, "Oat milk, 1 l");
  await expect(bOat).toHaveCount(1);
  await addItem(b, "Paper cups, 50 pack");
  const aCups = ui.row(a, "Paper cups, 50 pack");
  await expect(aCups).toHaveCount(1);

  // Quantity: Alice types, Bob sees the value and the line price.
  await ui.quantity(aOat).fill("3");
  await expect(ui.quantity(bOat)).toHaveValue("3");
  await expect(bOat).toContainText("€6.87");

  // Note: Bob types, Alice sees it.
  await ui.note(bOat).fill("Barista edition, please");
  await expect(ui.note(aOat)).toHaveValue("Barista edition, please");

  // Bob changes his own item's quantity too.
  await ui.quantity(ui.row(b, "Paper cups, 50 pack")).fill("2");
  await expect(ui.quantity(aCups)).toHaveValue("2");

  // Title: Bob renames the draft; Alice's field and drafts list follow.
  const renamed = "Kitchen restock, March";
  await ui.title(b).fill(renamed);
  await expect(ui.title(a)).toHaveValue(renamed);
  await expect(draftLink(a, renamed, "Editing")).toBeVisible();
  await expect(draftLink(b, renamed, "Editing")).toBeVisible();

  // Both agree on the order and its total (3 x 2.29 + 2 x 6.49), and on it being saved.
  for (const p of [a, b]) {
    await expect(ui.items(p).getByRole("row")).toHaveCount(3); // header + 2 items
    await expect(ui.draft(p)).toContainText("Total €19.85");
    await expect(ui.saveState(p)).toHaveText("All changes saved");
  }

  // What both saw is what the server holds.
  await b.reload();
  await expect(ui.title(b)).toHaveValue(renamed);
  await expect(ui.quantity(ui.row(b, "Oat milk, 1 l"))).toHaveValue("3");
  await expect(ui.note(ui.row(b, "Oat milk, 1 l"))).toHaveValue("Barista edition, please");
  await expect(ui.quantity(ui.row(b, "Paper cups, 50 pack"))).toHaveValue("2");
});

test("presence lists who is in the draft and shows a member next to the field they are on", async ({ alice, bob }) => {
  const a = alice.page;
  const b = bob.page;
  await newDraft(a, "Presence check");
  const aRow = await addItem(a, "Green tea, 100 bags");
  await b.goto(a.url());
  const bRow = ui.row(b, "Green tea, 100 bags");
  await expect(bRow).toHaveCount(1);

  // "In this draft" lists both, on both screens.
  for (const [p, me, other] of [
    [a, "Alice", "Bob"],
    [b, "Bob", "Alice"],
  ] as const) {
    const people = ui.presence(p).getByRole("listitem");
    await expect(people).toHaveCount(2);
    await expect(people.filter({ hasText: `${me} (you)` })).toHaveCount(1);
    await expect(people.filter({ hasText: other })).toHaveCount(1);
  }

  // Bob is on the note of the tea: Alice sees him beside that field, and only there.
  await ui.note(bRow).focus();
  const aNoteCell = aRow.getByRole("cell").filter({ has: a.getByRole("textbox", { name: "Note", exact: true }) });
  await expect(aNoteCell).toContainText("Bob");
  await expect(ui.note(aRow)).toHaveAccessibleDescription("Bob is here");
  await expect(ui.quantity(aRow)).toHaveAccessibleDescription("");
  await expect(ui.title(a)).toHaveAccessibleDescription("");

  // He moves to the quantity, then to the title.
  await ui.quantity(bRow).focus();
  await expect(ui.quantity(aRow)).toHaveAccessibleDescription("Bob is here");
  await expect(ui.note(aRow)).toHaveAccessibleDescription("");
  await expect(aNoteCell).not.toContainText("Bob");
  await ui.title(b).focus();
  await expect(ui.title(a)).toHaveAccessibleDescription("Bob is here");
  await expect(ui.quantity(aRow)).toHaveAccessibleDescription("");

  // And Alice's own focus shows on Bob's screen, not on hers.
  await ui.note(aRow).focus();
  await expect(ui.note(bRow)).toHaveAccessibleDescription("Alice is here");
  await expect(ui.note(aRow)).toHaveAccessibleDescription("");

  // Bob leaves the draft: Alice's list shrinks to herself.
  await b.goto("/");
  const aPeople = ui.presence(a).getByRole("listitem");
  await expect(aPeople).toHaveCount(1);
  await expect(aPeople).toHaveText("Alice (you)");
  await expect(ui.title(a)).toHaveAccessibleDescription("");
});
