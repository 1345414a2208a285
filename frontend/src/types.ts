// Shapes of the wire contract (shared/PROTOCOL.md, v1). Fields the client
// does not rely on are optional so that a server that grows the contract, or
// omits something, never breaks rendering.

export interface Team {
  id: string;
  name: string;
}

export interface Member {
  id: string;
  display_name: string;
}

export interface Me {
  team: Team;
  member: Member;
  invite_token: string;
}

export interface Product {
  sku: string;
  name: string;
  unit_price_cents: number;
  currency: string;
}

export interface Item {
  id: string;
  sku: string;
  name: string;
  quantity: number;
  note: string;
}

export type DraftStateName = "editing" | "submitted";

export interface Submission {
  operation_id: string;
  message_id?: string;
  revision: number;
}

export interface DraftSummary {
  id: string;
  title: string;
  revision: number;
  state: DraftStateName;
  created_at?: string;
  updated_at?: string;
  submission?: Submission | null;
}

export interface Draft extends DraftSummary {
  items: Item[];
}

export type Op =
  | { kind: "set_title"; title: string }
  | { kind: "add_item"; item: { id: string; sku: string; quantity: number; note: string } }
  | { kind: "update_item"; item_id: string; quantity?: number; note?: string }
  | { kind: "remove_item"; item_id: string };

export type OperationStatus = "pending" | "processing" | "completed" | "failed";
export type StepStatus = "waiting" | "running" | "done" | "failed" | "skipped";

export interface Step {
  name: string;
  status: StepStatus | string;
  started_at?: string | null;
  finished_at?: string | null;
  attempts?: number;
  error?: string | null;
}

export interface ErrorBody {
  code: string;
  message: string;
}

export interface Operation {
  id: string;
  draft_id: string;
  draft_title?: string;
  message_id?: string;
  revision?: number;
  status: OperationStatus | string;
  steps?: Step[];
  error?: ErrorBody | null;
  result?: unknown;
  submitted_by?: Member | null;
  submitted_at?: string;
  updated_at?: string;
  seq: number;
  retryable?: boolean;
}

export interface PresenceMember {
  id: string;
  display_name: string;
  focus: string | null;
}

/** Messages the server sends over the WebSocket. */
export type ServerMessage =
  | { type: "hello"; member: Member; team: Team }
  | { type: "snapshot"; draft: Draft }
  | { type: "applied"; draft_id: string; revision: number; client_op_id: string; author?: Member; op: Op }
  | { type: "rejected"; draft_id: string; client_op_id: string; error: ErrorBody }
  | { type: "presence"; draft_id: string; members: PresenceMember[] }
  | { type: "operation"; operation: Operation }
  | { type: "draft"; draft: { id: string } }
  | { type: "error"; error: ErrorBody; draft_id?: string };

/** Messages the client sends over the WebSocket. */
export type ClientMessage =
  | { type: "subscribe"; draft_id: string }
  | { type: "unsubscribe"; draft_id: string }
  | { type: "op"; draft_id: string; client_op_id: string; base_revision: number; op: Op }
  | { type: "presence"; draft_id: string; focus: string | null };
