// The navigation "Drafts": a button for a new draft and the team's drafts.

import type { App } from "../app";
import { h, setAttr, setText, showOnly, syncList } from "../dom";
import { draftStateText } from "../format";
import type { DraftSummary } from "../types";

export class DraftsNav {
  readonly el: HTMLElement;
  private readonly app: App;
  private readonly newButton: HTMLButtonElement;
  private readonly error: HTMLElement;
  private readonly list: HTMLUListElement;
  private readonly empty: HTMLElement;
  private readonly loading: HTMLElement;

  constructor(app: App) {
    this.app = app;
    this.newButton = h("button", { type: "button", class: "btn primary" }, "New draft");
    this.error = h("p", { class: "form-error", role: "alert" });
    this.list = h("ul", { class: "draft-list" });
    this.empty = h("p", { class: "empty" });
    this.empty.dataset.text = "No drafts yet. Start one with New draft.";
    this.loading = h("p", { class: "empty loading" });
    this.loading.dataset.text = "Loading drafts...";
    this.el = h(
      "nav",
      { class: "panel nav-panel", "aria-label": "Drafts" },
      h("div", { class: "panel-head" }, h("h2", null, "Drafts"), this.newButton),
      this.error,
      this.loading,
      this.empty,
      this.list,
    );

    this.newButton.addEventListener("click", () => void this.app.newDraft());
    this.list.addEventListener("click", (ev) => {
      const me = ev as MouseEvent;
      if (me.defaultPrevented || me.button !== 0 || me.metaKey || me.ctrlKey || me.shiftKey || me.altKey) return;
      const a = (ev.target as Element).closest("a[data-draft]");
      if (!(a instanceof HTMLAnchorElement)) return;
      ev.preventDefault();
      const id = a.dataset.draft;
      if (id) this.app.openDraft(id, "push");
    });
  }

  update(): void {
    const app = this.app;
    this.newButton.disabled = app.creatingDraft;
    setAttr(this.newButton, "aria-busy", app.creatingDraft ? "true" : null);
    setText(this.error, app.createDraftError ?? app.draftsError ?? "");
    const drafts = app.draftSummaries();
    showOnly(this.loading, !(app.draftsLoaded || drafts.length > 0 || app.draftsError !== null));
    showOnly(this.empty, app.draftsLoaded && drafts.length === 0);
    syncList(
      this.list,
      drafts,
      (d) => d.id,
      (d) => this.row(d),
      (li, d) => this.patchRow(li, d),
    );
  }

  private row(d: DraftSummary): HTMLElement {
    const a = h(
      "a",
      { href: `/drafts/${encodeURIComponent(d.id)}`, "data-draft": d.id, class: "draft-link" },
      h("span", { class: "draft-title" }),
      " ",
      h("span", { class: "badge" }),
    );
    return h("li", null, a);
  }

  private patchRow(li: HTMLElement, d: DraftSummary): void {
    const a = li.firstElementChild as HTMLAnchorElement;
    const title = a.querySelector(".draft-title") as HTMLElement;
    const badge = a.querySelector(".badge") as HTMLElement;
    setText(title, d.title || "Untitled");
    setText(badge, draftStateText(d.state));
    badge.dataset.state = d.state;
    setAttr(a, "aria-current", d.id === this.app.openDraftId ? "page" : null);
  }
}
