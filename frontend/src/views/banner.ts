// The banner: team, invite link, own name, sign out, connection state.

import type { App } from "../app";
import { h, setAttr, setHidden, setText, setValue } from "../dom";

const CONNECTION_TEXT = {
  connected: "Connected",
  reconnecting: "Reconnecting...",
  offline: "Offline",
} as const;

function initials(name: string): string {
  const parts = name.trim().split(/\s+/).filter(Boolean);
  const first = parts[0]?.[0] ?? "?";
  const second = parts.length > 1 ? (parts[parts.length - 1]?.[0] ?? "") : "";
  return (first + second).toUpperCase();
}

export class BannerView {
  readonly el: HTMLElement;
  private readonly app: App;
  private readonly teamName: HTMLElement;
  private readonly inviteButton: HTMLButtonElement;
  private readonly invitePanel: HTMLElement;
  private readonly inviteInput: HTMLInputElement;
  private readonly copied: HTMLElement;
  private readonly meName: HTMLElement;
  private readonly avatar: HTMLElement;
  private readonly connection: HTMLElement;
  private readonly signOut: HTMLButtonElement;
  private copiedTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(app: App) {
    this.app = app;
    this.teamName = h("h1", { class: "team-name" });
    this.inviteButton = h(
      "button",
      { type: "button", class: "btn", "aria-expanded": "false", "aria-controls": "invite-panel" },
      "Invite",
    );
    this.inviteInput = h("input", { id: "invite-link", type: "text", readOnly: true, spellcheck: false });
    const copy = h("button", { type: "button", class: "btn primary" }, "Copy link");
    this.copied = h("span", { class: "copied", "aria-live": "polite" });
    this.invitePanel = h(
      "div",
      { id: "invite-panel", class: "invite-panel", hidden: true },
      h("label", { for: "invite-link" }, "Invite link"),
      h("div", { class: "invite-row" }, this.inviteInput, copy),
      h("p", { class: "hint" }, "Anyone with this link can join your team. ", this.copied),
    );
    this.meName = h("span", { class: "me-name" });
    this.avatar = h("span", { class: "avatar", "aria-hidden": "true" });
    this.connection = h("span", { role: "status", "aria-label": "Connection", class: "connection" });
    this.signOut = h("button", { type: "button", class: "btn ghost" }, "Sign out");

    const invite = h("div", { class: "invite" }, this.inviteButton, this.invitePanel);
    this.el = h(
      "header",
      { role: "banner", class: "banner" },
      h("div", { class: "brand" }, h("span", { class: "wordmark small" }, "handoff"), this.teamName),
      h(
        "div",
        { class: "banner-tools" },
        invite,
        this.connection,
        h("span", { class: "me" }, this.avatar, this.meName),
        this.signOut,
      ),
    );

    this.inviteButton.addEventListener("click", () => {
      const open = Boolean(this.invitePanel.hidden);
      this.setInviteOpen(open);
      if (open) {
        this.inviteInput.focus();
        this.inviteInput.select();
      }
    });
    // The panel floats over the page: a press anywhere else, or focus
    // moving elsewhere, puts it away so it never hides the draft.
    const outside = (ev: PointerEvent) => {
      // A banner no longer on the page (signed out) lets go of the document.
      if (!this.el.isConnected) {
        document.removeEventListener("pointerdown", outside);
        return;
      }
      if (!this.invitePanel.hidden && ev.target instanceof Node && !invite.contains(ev.target)) this.setInviteOpen(false);
    };
    document.addEventListener("pointerdown", outside);
    invite.addEventListener("focusout", (ev) => {
      const next = ev.relatedTarget;
      if (!this.invitePanel.hidden && next instanceof Node && !invite.contains(next)) this.setInviteOpen(false);
    });
    this.inviteInput.addEventListener("focus", () => this.inviteInput.select());
    copy.addEventListener("click", () => void this.copy());
    this.invitePanel.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape") {
        this.setInviteOpen(false);
        this.inviteButton.focus();
      }
    });
    this.signOut.addEventListener("click", () => {
      this.signOut.disabled = true;
      void this.app.signOut().finally(() => {
        this.signOut.disabled = false;
      });
    });
  }

  private setInviteOpen(open: boolean): void {
    setHidden(this.invitePanel, !open);
    setAttr(this.inviteButton, "aria-expanded", open ? "true" : "false");
  }

  private async copy(): Promise<void> {
    const link = this.app.inviteLink();
    let ok = false;
    try {
      await navigator.clipboard.writeText(link);
      ok = true;
    } catch {
      this.inviteInput.focus();
      this.inviteInput.select();
      try {
        ok = document.execCommand("copy");
      } catch {
        ok = false;
      }
    }
    setText(this.copied, ok ? "Copied." : "Press Ctrl+C (or ⌘C) to copy the selected link.");
    if (this.copiedTimer !== null) clearTimeout(this.copiedTimer);
    this.copiedTimer = setTimeout(() => setText(this.copied, ""), 4000);
  }

  update(): void {
    const { me, connection } = this.app;
    setText(this.teamName, me.team.name);
    setText(this.meName, me.member.display_name);
    setAttr(this.avatar, "data-initials", initials(me.member.display_name));
    setValue(this.inviteInput, this.app.inviteLink());
    setText(this.connection, CONNECTION_TEXT[connection]);
    this.connection.dataset.state = connection;
  }
}
