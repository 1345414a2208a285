// Team creation and joining by invite link.

import { test, expect, ui, createTeam, inviteLink, joinTeam, unique } from "./fixtures";

test("a member creates a team and a teammate joins it by the invite link", async ({ browser, baseURL }) => {
  const teamName = unique("Acme buyers");
  const aliceContext = await browser.newContext();
  const bobContext = await browser.newContext();
  try {
    const alice = await aliceContext.newPage();
    await createTeam(alice, teamName, "Alice");
    await expect(ui.banner(alice).getByRole("heading", { name: teamName, exact: true })).toBeVisible();
    await expect(ui.nav(alice).getByRole("button", { name: "New draft", exact: true })).toBeEnabled();
    await expect(ui.submissions(alice)).toBeVisible();

    // The link is <origin>/join#<token>: the token never reaches the server in a URL.
    const link = await inviteLink(alice);
    expect(link.startsWith(`${baseURL}/join#`)).toBe(true);
    const token = link.slice(`${baseURL}/join#`.length);
    expect(token.length).toBeGreaterThanOrEqual(22);
    await expect(alice.getByRole("button", { name: "Copy link", exact: true })).toBeVisible();
    // The invite panel floats over the page; pressing elsewhere or Escape puts it away.
    const box = alice.getByRole("textbox", { name: "Invite link", exact: true });
    await ui.nav(alice).getByRole("heading", { name: "Drafts", exact: true }).click();
    await expect(box).toBeHidden();
    await ui.banner(alice).getByRole("button", { name: "Invite", exact: true }).click();
    await expect(box).toBeVisible();
    await expect(box).toBeFocused();
    await alice.keyboard.press("Escape");
    await expect(box).toBeHidden();

    const bob = await bobContext.newPage();
    await joinTeam(bob, link, teamName, "Bob");
    // The token is dropped from the address once used.
    await expect(bob).not.toHaveURL(/#/);

    // Both sessions belong to the same team.
    const aliceMe = await (await alice.request.get("/api/me")).json();
    const bobMe = await (await bob.request.get("/api/me")).json();
    expect(bobMe.team.id).toBe(aliceMe.team.id);
    expect(bobMe.member.display_name).toBe("Bob");
    expect(bobMe.member.id).not.toBe(aliceMe.member.id);

    // A reload keeps the session.
    await bob.reload();
    await expect(ui.banner(bob)).toContainText(teamName);
    await expect(ui.connection(bob)).toHaveText("Connected");
  } finally {
    await aliceContext.close();
    await bobContext.close();
  }
});

test("an unknown invite token says so plainly", async ({ page }) => {
  await page.goto("/join#this-token-does-not-exist");
  await expect(page.getByRole("alert")).toContainText("This invite link is not valid");
  await expect(page.getByRole("form", { name: "Join team", exact: true })).toHaveCount(0);
  // One can still start a team of one's own from there.
  await expect(page.getByRole("form", { name: "Create a team", exact: true })).toBeVisible();
});
