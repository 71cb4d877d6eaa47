// A versioned schema change, written once per dialect. Version ranges keep modules apart:
// 1-99 core (orders, outbox, inbox), 100-199 connectors (bindings, watermarks), 200-299 workflow.
export interface Migration {
  version: number;
  name: string;
  postgres: string;
  sqlite: string;
}
