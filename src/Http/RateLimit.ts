/**
 * The rate limit of every authenticated `/v1` request (after `ApiKeyAuth`, which says whose it is), and the headers
 * that tell a client where it stands, on every response of those routes, successes and refusals alike:
 *
 *   RateLimit-Policy: "requests";q=60;w=60, "tokens";q=100000;w=60;qu="tokens", "concurrency";q=4;qu="concurrent-requests"
 *   RateLimit: "requests";r=59;t=60, "tokens";r=99000;t=42, "concurrency";r=3
 *   RateLimit-Limit: 60  RateLimit-Remaining: 59  RateLimit-Reset: 60
 *
 * `RateLimit-Policy` and `RateLimit` are the fields of the current IETF draft (draft-ietf-httpapi-ratelimit-headers,
 * from -08 on), listing every policy checked for the request (tokens and concurrency only on chat turns). The three
 * `RateLimit-Limit` / `-Remaining` / `-Reset` fields of the earlier drafts, which most clients read today, describe
 * the one window (requests or tokens) closest to running out. Reset and `t` are seconds until the window restarts.
 */
import { HttpApiMiddleware, HttpApp, HttpServerResponse } from "@effect/platform"
import { Effect, FiberRef, Layer, Option, Schema } from "effect"
import { CurrentCaller } from "../Auth.js"
import {
  CurrentQuotaReport,
  QuotaReport,
  type QuotaState,
  RateLimit,
  RateLimitedBody,
  RateLimitUnavailableBody
} from "../RateLimit.js"

export class RateLimitMiddleware extends HttpApiMiddleware.Tag<RateLimitMiddleware>()("nexxi/RateLimitMiddleware", {
  failure: Schema.Union(RateLimitedBody, RateLimitUnavailableBody)
}) {}

const WINDOW_SECONDS = 60

const order: ReadonlyArray<QuotaState["policy"]> = ["requests", "tokens", "concurrency"]

const policyItem = (state: QuotaState) => {
  switch (state.policy) {
    case "requests":
      return `"requests";q=${state.limit};w=${WINDOW_SECONDS}`
    case "tokens":
      return `"tokens";q=${state.limit};w=${WINDOW_SECONDS};qu="tokens"`
    case "concurrency":
      return `"concurrency";q=${state.limit};qu="concurrent-requests"`
  }
}

const stateItem = (state: QuotaState) =>
  `"${state.policy}";r=${state.remaining}${Option.match(state.resetSeconds, { onNone: () => "", onSome: (t) => `;t=${t}` })}`

/** The RateLimit header fields for what the request was checked against; none when it had no limits. */
export const quotaHeaders = (report: QuotaReport): Record<string, string> => {
  const states = order.flatMap((policy) => Option.toArray(Option.fromNullable(report.states.get(policy))))
  if (states.length === 0) return {}
  const headers: Record<string, string> = {
    "ratelimit-policy": states.map(policyItem).join(", "),
    ratelimit: states.map(stateItem).join(", ")
  }
  // The window closest to running out, by the share of it that is left.
  const closest = states
    .filter((state) => Option.isSome(state.resetSeconds))
    .reduce<QuotaState | undefined>(
      (best, state) =>
        best === undefined || state.remaining / state.limit < best.remaining / best.limit ? state : best,
      undefined
    )
  if (closest !== undefined) {
    headers["ratelimit-limit"] = String(closest.limit)
    headers["ratelimit-remaining"] = String(closest.remaining)
    headers["ratelimit-reset"] = String(Option.getOrElse(closest.resetSeconds, () => 0))
  }
  return headers
}

/** Browsers may read these across origins (CORS_ORIGINS): `Access-Control-Expose-Headers`. */
export const rateLimitHeaderNames = [
  "ratelimit-policy",
  "ratelimit",
  "ratelimit-limit",
  "ratelimit-remaining",
  "ratelimit-reset"
] as const

export const RateLimitMiddlewareLive = Layer.effect(
  RateLimitMiddleware,
  Effect.map(RateLimit, (limiter) =>
    Effect.gen(function* () {
      const report = new QuotaReport()
      // Later checks of the request (its chat turn) add to the same report.
      yield* FiberRef.set(CurrentQuotaReport, report)
      yield* HttpApp.appendPreResponseHandler((_, response) =>
        Effect.succeed(HttpServerResponse.setHeaders(response, quotaHeaders(report)))
      )
      // Runs inside ApiKeyAuth (the groups add this middleware before it), which provides the caller.
      const caller = yield* Effect.serviceOption(CurrentCaller)
      if (Option.isNone(caller)) return yield* Effect.dieMessage("RateLimitMiddleware must run after ApiKeyAuth")
      yield* limiter.request(caller.value)
    })
  )
)
