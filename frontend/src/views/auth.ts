// The screens without a session: create a team, or join one by invite link.

import { api, ApiError, errorMessage } from "../api";
import { h, replaceChildren, setText } from "../dom";
import type { Me, Team } from "../types";

const NAME_LIMIT = 80;

/** SignedIn receives the new session once creating or joining worked. */
export type SignedIn = (me: Me) => void;

function intro(): HTMLElement {
  return h(
    "header",
    { class: "auth-intro" },
    h("h1", { class: "wordmark" }, "handoff"),
    h(
      "p",
      { class: "lede" },
      "Put together a team order with your colleagues, live in one shared cart, then hand it off and watch it being processed step by step.",
    ),
  );
}

function field(id: string, label: string, autocomplete: string): { wrap: HTMLElement; input: HTMLInputElement } {
  const input = h("input", { id, name: id, type: "text", autocomplete, spellcheck: false });
  const wrap = h("div", { class: "field" }, h("label", { for: id }, label), input);
  return { wrap, input };
}

function checkName(value: string, what: string): string | null {
  const v = value.trim();
  if (v === "") return `Enter ${what}.`;
  if ([...v].length > NAME_LIMIT) return `${what[0]!.toUpperCase()}${what.slice(1)} can be at most ${NAME_LIMIT} characters.`;
  return null;
}

function busy(button: HTMLButtonElement, on: boolean): void {
  button.disabled = on;
  button.classList.toggle("is-busy", on);
  button.setAttribute("aria-busy", on ? "true" : "false");
}

function createTeamForm(onSignedIn: SignedIn): HTMLElement {
  const team = field("team-name", "Team name", "organization");
  const you = field("create-your-name", "Your name", "name");
  const error = h("p", { class: "form-error", role: "alert" });
  const button = h("button", { type: "submit", class: "btn primary" }, "Create team");
  const form = h(
    "form",
    { class: "card auth-card", "aria-label": "Create a team", novalidate: true },
    h("h2", null, "Create a team"),
    h("p", { class: "muted" }, "You'll get an invite link to share with your teammates."),
    team.wrap,
    you.wrap,
    error,
    h("div", { class: "actions" }, button),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (button.disabled) return;
    const problem = checkName(team.input.value, "a team name") ?? checkName(you.input.value, "your name");
    setText(error, problem ?? "");
    if (problem) return;
    busy(button, true);
    try {
      const created = await api.createTeam(team.input.value.trim(), you.input.value.trim());
      onSignedIn({ team: created.team, member: created.member, invite_token: created.invite_token });
    } catch (e) {
      setText(error, errorMessage(e));
      busy(button, false);
    }
  });
  return form;
}

function joinTeamForm(token: string, team: Team, current: Me | null, onSignedIn: SignedIn): HTMLElement {
  const you = field("join-your-name", "Your name", "name");
  const error = h("p", { class: "form-error", role: "alert" });
  const button = h("button", { type: "submit", class: "btn primary" }, "Join team");
  const form = h(
    "form",
    { class: "card auth-card", "aria-label": "Join team", novalidate: true },
    h("h2", null, "Join ", h("span", { class: "team-name-inline" }, team.name)),
    h("p", { class: "muted" }, "You were invited to this team's drafts. Tell them who you are."),
    current
      ? h(
          "p",
          { class: "hint" },
          `This browser is signed in to ${current.team.name} as ${current.member.display_name}. Joining switches it to ${team.name}.`,
        )
      : null,
    you.wrap,
    error,
    h("div", { class: "actions" }, button),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (button.disabled) return;
    const problem = checkName(you.input.value, "your name");
    setText(error, problem ?? "");
    if (problem) return;
    busy(button, true);
    try {
      await api.join(token, you.input.value.trim());
      // The answer has no invite token; /api/me has the whole session.
      const me = await api.me();
      onSignedIn(me);
    } catch (e) {
      setText(error, errorMessage(e));
      busy(button, false);
    }
  });
  return form;
}

/** renderLanding shows the start screen: what handoff is, and the create-team form. */
export function renderLanding(root: HTMLElement, onSignedIn: SignedIn): void {
  document.title = "handoff";
  replaceChildren(
    root,
    h(
      "main",
      { class: "auth" },
      intro(),
      createTeamForm(onSignedIn),
      h("p", { class: "muted small center" }, "Already have a team? Open the invite link a teammate sent you."),
    ),
  );
  root.querySelector<HTMLInputElement>("#team-name")?.focus();
}

/** renderJoin shows the invite screen for a token taken from the link's fragment. */
export async function renderJoin(
  root: HTMLElement,
  token: string,
  current: Me | null,
  onSignedIn: SignedIn,
): Promise<void> {
  document.title = "Join a team · handoff";
  const slot = h("div", { class: "card auth-card loading-card" }, h("span", { class: "spinner" }), "Looking up your invite...");
  const main = h("main", { class: "auth" }, intro(), slot);
  replaceChildren(root, main);

  let team: Team;
  try {
    ({ team } = await api.lookupInvite(token));
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) {
      slot.replaceWith(
        h(
          "div",
          { class: "card auth-card notice-card", role: "alert" },
          h("h2", null, "This invite link is not valid"),
          h(
            "p",
            null,
            "We don't know this invite. The link may be mistyped or incomplete. Ask a teammate to send it again, or create a team of your own below.",
          ),
        ),
        createTeamForm(onSignedIn),
      );
    } else {
      const again = h("button", { type: "button", class: "btn" }, "Try again");
      again.addEventListener("click", () => void renderJoin(root, token, current, onSignedIn));
      slot.replaceWith(
        h(
          "div",
          { class: "card auth-card notice-card", role: "alert" },
          h("h2", null, "Could not open the invite"),
          h("p", null, errorMessage(e)),
          h("div", { class: "actions" }, again),
        ),
      );
    }
    return;
  }

  if (current && current.team.id === team.id) {
    // Already a member of this team: go straight in.
    onSignedIn(current);
    return;
  }
  document.title = `Join ${team.name} · handoff`;
  slot.replaceWith(joinTeamForm(token, team, current, onSignedIn));
  root.querySelector<HTMLInputElement>("#join-your-name")?.focus();
}
