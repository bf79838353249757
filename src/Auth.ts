/**
 * Authentication: every `/v1` endpoint needs the `X-API-Key` header. Keys are compared as SHA-256 digests with a
 * constant-time comparison, so neither the content nor the length of the expected key leaks through timing.
 */
import { HttpApiMiddleware, HttpApiSecurity } from "@effect/platform"
import { Context, Effect, Layer, Redacted } from "effect"
import { createHash, timingSafeEqual } from "node:crypto"
import { AppConfig } from "./AppConfig.js"
import { asErrorBody, Unauthorized } from "./Domain/Errors.js"

/** Who is calling: the id of the API key that authenticated the request (never the key itself). */
export interface Caller {
  readonly keyId: string
}
export class CurrentCaller extends Context.Tag("nexxi/CurrentCaller")<CurrentCaller, Caller>() {}

export class ApiKeyAuth extends HttpApiMiddleware.Tag<ApiKeyAuth>()("nexxi/ApiKeyAuth", {
  failure: asErrorBody(Unauthorized),
  provides: CurrentCaller,
  security: { apiKey: HttpApiSecurity.apiKey({ key: "X-API-Key", in: "header" }) }
}) {}

const digest = (value: string) => createHash("sha256").update(value, "utf8").digest()

/** A short, stable, non-reversible id for a key: what sessions and logs refer to instead of the key. */
export const keyIdOf = (key: string) => `key_${digest(key).toString("hex").slice(0, 16)}`

export const ApiKeyAuthLive = Layer.effect(
  ApiKeyAuth,
  Effect.gen(function* () {
    const { apiKey } = yield* AppConfig
    const expected = digest(Redacted.value(apiKey.key))
    const caller: Caller = { keyId: keyIdOf(Redacted.value(apiKey.key)) }
    return ApiKeyAuth.of({
      apiKey: (provided) => {
        const given = Redacted.value(provided)
        return (
          given.length > 0 && timingSafeEqual(digest(given), expected)
            ? Effect.succeed(caller)
            : Effect.fail(
                new Unauthorized({
                  message: given.length === 0 ? "Missing X-API-Key header" : "Invalid API key"
                })
              )
        ).pipe(Effect.withSpan("Auth.apiKey"))
      }
    })
  })
)
