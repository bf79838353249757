import { Schema } from "effect"

export const DependencyState = Schema.Literal("up", "down", "embedded")

/** What `/ready` says of one dependency. "embedded" runs in-process (no server to reach). */
export const DependencyHealth = Schema.Struct({
  status: DependencyState,
  kind: Schema.String.annotations({ description: "What backs it, e.g. memory, redis, postgres, tgi, echo" }),
  detail: Schema.optional(Schema.String)
}).annotations({ identifier: "DependencyHealth" })
export type DependencyHealth = typeof DependencyHealth.Type

export const isHealthy = (health: DependencyHealth): boolean => health.status !== "down"
