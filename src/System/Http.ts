/** Handlers of the operational endpoints. */
import { HttpApiBuilder, HttpServerResponse } from "@effect/platform"
import { Effect } from "effect"
import { Api } from "../Api.js"
import { type DependencyHealth, isHealthy } from "../Domain/Health.js"
import { Generator } from "../Generator.js"
import { Metrics } from "../Metrics.js"
import { Session } from "../Session.js"
import { Storage } from "../Storage.js"
import type { Readiness } from "./Api.js"

/** A dependency that does not answer its health check quickly is down, as far as a load balancer cares. */
const withinTimeout = (check: Effect.Effect<DependencyHealth>, kind: string) =>
  check.pipe(
    Effect.timeoutTo({
      duration: "2 seconds",
      onTimeout: (): DependencyHealth => ({ status: "down", kind, detail: "health check timed out" }),
      onSuccess: (health) => health
    })
  )

export const SystemHttpLive = HttpApiBuilder.group(Api, "system", (handlers) =>
  Effect.gen(function* () {
    const session = yield* Session
    const storage = yield* Storage
    const generator = yield* Generator
    const metrics = yield* Metrics

    return handlers
      .handle("health", () => Effect.succeed({ status: "ok" as const }))
      .handle("ready", () =>
        Effect.gen(function* () {
          const dependencies = yield* Effect.all(
            {
              session: withinTimeout(session.readiness, "session"),
              storage: withinTimeout(storage.readiness, "storage"),
              generator: withinTimeout(generator.readiness, "generator")
            },
            { concurrency: "unbounded" }
          )
          const ready = Object.values(dependencies).every(isHealthy)
          const body: Readiness = { status: ready ? "ready" : "not_ready", dependencies }
          return HttpServerResponse.unsafeJson(body, { status: ready ? 200 : 503 })
        })
      )
      .handle("metrics", () =>
        Effect.map(metrics.scrape, (text) => HttpServerResponse.text(text, { contentType: Metrics.contentType }))
      )
  })
)
