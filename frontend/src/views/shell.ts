// The signed-in page: banner, then drafts | draft | submissions, and a
// corner for page-wide messages.

import type { App } from "../app";
import { h, setText, syncList } from "../dom";
import { BannerView } from "./banner";
import { DraftsNav } from "./drafts-nav";
import { DraftView } from "./draft-view";
import { SubmissionsView } from "./submissions";

export class Shell {
  readonly el: HTMLElement;
  private readonly app: App;
  private readonly banner: BannerView;
  private readonly nav: DraftsNav;
  private readonly draft: DraftView;
  private readonly submissions: SubmissionsView;
  private readonly notices: HTMLElement;

  constructor(app: App) {
    this.app = app;
    this.banner = new BannerView(app);
    this.nav = new DraftsNav(app);
    this.draft = new DraftView(app);
    this.submissions = new SubmissionsView(app);
    this.notices = h("div", { class: "notices", role: "alert" });
    this.el = h(
      "div",
      { class: "shell" },
      this.banner.el,
      h("div", { class: "layout" }, this.nav.el, this.draft.el, this.submissions.el),
      this.notices,
    );
  }

  update(): void {
    this.banner.update();
    this.nav.update();
    this.draft.update();
    this.submissions.update();
    syncList(
      this.notices,
      this.app.notices,
      (n) => String(n.id),
      (n) => {
        const close = h("button", { type: "button", class: "btn ghost small", "aria-label": "Dismiss" }, "×");
        close.addEventListener("click", () => this.app.dismiss(n.id));
        return h("div", { class: "notice" }, h("span", { class: "notice-text" }), close);
      },
      (el, n) => setText(el.querySelector(".notice-text") as HTMLElement, n.text),
    );
  }
}
