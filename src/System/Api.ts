/** Operational endpoints: liveness, readiness and metrics. Open, without an API key, for probes and scrapers. */
import { HttpApiEndpoint, HttpApiGroup, HttpApiSchema, OpenApi } from "@effect/platform"
import { Schema } from "effect"
import { DependencyHealth } from "../Domain/Health.js"

export const Liveness = Schema.Struct({ status: Schema.Literal("ok") }).annotations({ identifier: "Liveness" })

export const Readiness = Schema.Struct({
  status: Schema.Literal("ready", "not_ready"),
  dependencies: Schema.Record({ key: Schema.String, value: DependencyHealth })
}).annotations({ identifier: "Readiness" })
export type Readiness = typeof Readiness.Type

export class SystemApi extends HttpApiGroup.make("system")
  .add(
    HttpApiEndpoint.get("health", "/health")
      .addSuccess(Liveness)
      .annotate(OpenApi.Summary, "Liveness: 200 while the process serves")
  )
  .add(
    HttpApiEndpoint.get("ready", "/ready")
      .addSuccess(Readiness)
      .addError(Readiness, { status: 503 })
      .annotate(OpenApi.Summary, "Readiness: 200 only when every dependency is healthy")
  )
  .add(
    HttpApiEndpoint.get("metrics", "/metrics")
      .addSuccess(HttpApiSchema.Text({ contentType: "text/plain; version=0.0.4; charset=utf-8" }))
      .annotate(OpenApi.Summary, "Prometheus metrics")
  )
  .annotate(OpenApi.Title, "System") {}
