/**
 * Authentication: every `/v1` endpoint needs a key, in the `X-API-Key` header or as `Authorization: Bearer <key>`
 * (what OpenAI clients send; both are accepted everywhere, the OpenAPI document names the usual one), either
 *
 * - the single `API_KEY` of the configuration, compared as SHA-256 digests in constant time, so neither the content
 *   nor the length of the expected key leaks through timing; or
 * - a managed key (`nx_…`, `Keys.ts`), looked up by its SHA-256 in the key store.
 *
 * The caller is the key's id and its limits (the server's defaults where the key sets none). Before any key is
 * checked, the client's address must not have failed too often in the last minute (`AUTH_FAILURES_PER_MINUTE`):
 * beyond that it gets 429, also for a right key, so that guessing gains nothing.
 */
import { HttpApiMiddleware, HttpApiSecurity, HttpServerRequest } from "@effect/platform"
import { Context, Effect, Layer, Option, Redacted, Schema } from "effect"
import { createHash, timingSafeEqual } from "node:crypto"
import { isIPv6 } from "node:net"
import { AppConfig } from "./AppConfig.js"
import { asErrorBody, Unauthorized } from "./Domain/Errors.js"
import { type ApiKeyInfo, Keys, KeysUnavailable } from "./Keys.js"
import { type Limits, RateLimit, RateLimitedBody, RateLimitUnavailableBody } from "./RateLimit.js"

/** Who is calling: the id of the API key that authenticated the request (never the key itself), and its limits. */
export interface Caller {
  readonly keyId: string
  readonly limits: Limits
}
export class CurrentCaller extends Context.Tag("nexxi/CurrentCaller")<CurrentCaller, Caller>() {}

export class ApiKeyAuth extends HttpApiMiddleware.Tag<ApiKeyAuth>()("nexxi/ApiKeyAuth", {
  failure: Schema.Union(
    asErrorBody(Unauthorized),
    RateLimitedBody,
    RateLimitUnavailableBody,
    asErrorBody(KeysUnavailable)
  ),
  provides: CurrentCaller,
  security: { apiKey: HttpApiSecurity.apiKey({ key: "X-API-Key", in: "header" }) }
}) {}

/** The same authentication, documented as a bearer token: the OpenAI-compatible endpoints. */
export class BearerAuth extends HttpApiMiddleware.Tag<BearerAuth>()("nexxi/BearerAuth", {
  failure: ApiKeyAuth.failure,
  provides: CurrentCaller,
  security: { bearer: HttpApiSecurity.bearer }
}) {}

const BEARER = /^bearer[ \t]+(\S+)\s*$/i

/** The key a request carries: X-API-Key, else the token of `Authorization: Bearer`. */
export const requestKey = (headers: Readonly<Record<string, string | undefined>>): string => {
  const apiKey = headers["x-api-key"]?.trim() ?? ""
  if (apiKey.length > 0) return apiKey
  return BEARER.exec(headers["authorization"] ?? "")?.[1] ?? ""
}

const digest = (value: string) => createHash("sha256").update(value, "utf8").digest()

/** A short, stable, non-reversible id for a key: what sessions and logs refer to instead of the key. */
export const keyIdOf = (key: string) => `key_${digest(key).toString("hex").slice(0, 16)}`

/** An IPv6 client controls its whole /64: failures are counted per network, not per address. */
const ipv6Network = (address: string) => {
  const [head = "", tail] = address.split("%")[0]!.split("::")
  const left = head === "" ? [] : head.split(":")
  const right = tail === undefined || tail === "" ? [] : tail.split(":")
  const groups =
    tail === undefined ? left : [...left, ...Array(Math.max(0, 8 - left.length - right.length)).fill("0"), ...right]
  return `${groups
    .slice(0, 4)
    .map((group) => parseInt(group, 16).toString(16))
    .join(":")}::/64`
}

const normalizeAddress = (address: string) => {
  const trimmed = address.trim()
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(trimmed)
  if (mapped !== null) return mapped[1]!
  return isIPv6(trimmed.split("%")[0]!) ? ipv6Network(trimmed) : trimmed
}

/**
 * The client's address, for counting failed authentications: the socket's peer, unless `trustProxy` proxies stand
 * in front of Nexxi, each appending the address it saw to X-Forwarded-For; then the address the farthest trusted
 * proxy saw. Entries left of that are the client's own say and are ignored: anyone can send them.
 */
export const clientAddress = (request: HttpServerRequest.HttpServerRequest, trustProxy: number): string => {
  const socket = Option.getOrElse(request.remoteAddress, () => "unknown")
  if (trustProxy === 0) return normalizeAddress(socket)
  const forwarded = (request.headers["x-forwarded-for"] ?? "")
    .split(",")
    .map((entry) => entry.trim())
    .filter((entry) => entry.length > 0)
  // Nearest first: the socket (the nearest proxy), then the address each proxy appended, from the last.
  const hops = [socket, ...forwarded.reverse()]
  return normalizeAddress(hops[Math.min(trustProxy, hops.length - 1)]!)
}

/** Authenticates the current request, whichever header carries its key. */
const makeAuthenticate = Effect.gen(function* () {
  const config = yield* AppConfig
  const keys = yield* Keys
  const limiter = yield* RateLimit
  const expected = digest(Redacted.value(config.apiKey.key))
  const defaults: Limits = {
    requestsPerMinute: config.rateLimitRpm,
    tokensPerMinute: config.rateLimitTpm,
    concurrency: config.rateLimitConcurrency
  }
  const single: Caller = { keyId: keyIdOf(Redacted.value(config.apiKey.key)), limits: defaults }
  const managed = (key: ApiKeyInfo): Caller => ({
    keyId: key.id,
    limits: {
      requestsPerMinute: Option.getOrElse(key.limits.requestsPerMinute, () => defaults.requestsPerMinute),
      tokensPerMinute: Option.getOrElse(key.limits.tokensPerMinute, () => defaults.tokensPerMinute),
      concurrency: Option.getOrElse(key.limits.concurrency, () => defaults.concurrency)
    }
  })

  const identify = (given: string): Effect.Effect<Option.Option<Caller>, KeysUnavailable> => {
    if (given.length === 0) return Effect.succeedNone
    if (timingSafeEqual(digest(given), expected)) return Effect.succeedSome(single)
    return Effect.map(keys.authenticate(given), Option.map(managed))
  }

  return Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    const address = clientAddress(request, config.trustProxy)
    yield* limiter.authAttempt(address)
    const given = requestKey(request.headers)
    const caller = yield* identify(given)
    if (Option.isSome(caller)) return caller.value
    yield* limiter.authFailed(address)
    return yield* new Unauthorized({
      message:
        given.length === 0
          ? "Missing API key: send it in the X-API-Key header or as Authorization: Bearer <key>"
          : "Invalid or revoked API key"
    })
  }).pipe(Effect.withSpan("Auth.apiKey"))
})

export const ApiKeyAuthLive = Layer.effect(
  ApiKeyAuth,
  Effect.map(makeAuthenticate, (authenticate) => ApiKeyAuth.of({ apiKey: () => authenticate }))
)

export const BearerAuthLive = Layer.effect(
  BearerAuth,
  Effect.map(makeAuthenticate, (authenticate) => BearerAuth.of({ bearer: () => authenticate }))
)
