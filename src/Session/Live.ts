/** Chooses the session store from configuration: Redis when `REDIS_URL` is set, else process memory. */
import { Effect, Layer, Option } from "effect"
import { AppConfig } from "../AppConfig.js"
import { Session } from "../Session.js"
import { makeMemorySessions } from "./Memory.js"
import { makeRedisSessions } from "./Redis.js"

export const SessionLive = Layer.scoped(
  Session,
  Effect.gen(function* () {
    const config = yield* AppConfig
    const common = {
      ttlMillis: config.sessionTtlSeconds * 1000,
      maxTurns: config.sessionMaxTurns,
      lockTimeoutMillis: config.sessionLockTimeoutMs
    }
    return yield* Option.match(config.redisUrl, {
      onNone: () => Effect.succeed(makeMemorySessions({ ...common, maxSessions: config.sessionMaxSessions })),
      onSome: (url) =>
        makeRedisSessions({
          ...common,
          url,
          keyPrefix: config.redisKeyPrefix,
          lockTtlMillis: config.sessionLockTtlMs,
          connectTimeoutMillis: config.redisConnectTimeoutMs,
          commandTimeoutMillis: config.redisCommandTimeoutMs
        })
    })
  })
)
