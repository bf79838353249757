/**
 * Chooses where rate-limit counters live: Redis when `REDIS_URL` is set (shared by every replica), else this
 * process's memory (the embedded default: one replica).
 */
import { Effect, Layer, Option } from "effect"
import { AppConfig } from "../AppConfig.js"
import { makeRateLimit, RateLimit } from "../RateLimit.js"
import { makeMemoryLimiterStore } from "./Memory.js"
import { makeRedisLimiterStore } from "./Redis.js"

export const RateLimitLive = Layer.scoped(
  RateLimit,
  Effect.gen(function* () {
    const config = yield* AppConfig
    const store = yield* Option.match(config.redisUrl, {
      onNone: () => Effect.succeed({ store: makeMemoryLimiterStore(), storeName: "memory" }),
      onSome: (url) =>
        Effect.map(
          makeRedisLimiterStore({
            url,
            connectTimeoutMillis: config.redisConnectTimeoutMs,
            commandTimeoutMillis: config.redisCommandTimeoutMs
          }),
          (store) => ({ store, storeName: "Redis" })
        )
    })
    return yield* makeRateLimit(store.store, {
      keyPrefix: config.redisKeyPrefix,
      storeName: store.storeName,
      // Development keeps working through a Redis hiccup; staging and production refuse rather than go unlimited.
      failMode: Option.getOrElse(config.rateLimitFailMode, () => (config.appEnv === "development" ? "open" : "closed")),
      authFailuresPerMinute: config.authFailuresPerMinute
    })
  })
)
