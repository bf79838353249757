/**
 * Every setting of Nexxi, read once at start-up through Effect `Config` (environment variables, then a `.env`
 * file in the working directory). Secrets stay `Redacted` until the point of use.
 */
import { FileSystem } from "@effect/platform"
import { NodeFileSystem } from "@effect/platform-node"
import { Config, ConfigError, Console, Data, Effect, Either, LogLevel, Option, Redacted, Schema } from "effect"
import { randomBytes } from "node:crypto"
import { availableParallelism } from "node:os"

export const AppEnv = Schema.Literal("development", "staging", "production")
export type AppEnv = typeof AppEnv.Type

/** A start-up refusal with one line saying why (weak secret, bad value). */
export class StartupError extends Data.TaggedError("StartupError")<{ readonly message: string }> {}

const MIN_SECRET_LENGTH = 32

const logLevelNames: Record<string, LogLevel.LogLevel> = {
  trace: LogLevel.Trace,
  debug: LogLevel.Debug,
  info: LogLevel.Info,
  warn: LogLevel.Warning,
  warning: LogLevel.Warning,
  error: LogLevel.Error,
  fatal: LogLevel.Fatal,
  none: LogLevel.None
}

/** `LOG_LEVEL` accepts the owner's names (DEBUG / INFO / WARNING / ERROR) in any case. */
const logLevel = Config.string("LOG_LEVEL").pipe(
  Config.withDefault("info"),
  Config.mapOrFail((name) => {
    const level = logLevelNames[name.trim().toLowerCase()]
    return level
      ? Either.right(level)
      : Either.left(
          ConfigError.InvalidData([], `LOG_LEVEL must be one of ${Object.keys(logLevelNames).join(", ")}; got ${name}`)
        )
  })
)

const positiveInt = (name: string, fallback: number) =>
  Config.integer(name).pipe(
    Config.withDefault(fallback),
    Config.validate({ message: `${name} must be a positive integer`, validation: (n) => n > 0 })
  )

const optionalPositiveInt = (name: string) =>
  Config.option(
    Config.integer(name).pipe(
      Config.validate({ message: `${name} must be a positive integer`, validation: (n) => n > 0 })
    )
  )

const optionalSecret = (name: string) => Config.option(Config.redacted(name))

const commaList = (name: string) =>
  Config.string(name).pipe(
    Config.withDefault(""),
    Config.map((value) =>
      value
        .split(",")
        .map((item) => item.trim())
        .filter((item) => item.length > 0)
    )
  )

/** A score threshold of the safety filter, in (0, 1]. */
const scoreThreshold = (name: string, fallback: number) =>
  Config.number(name).pipe(
    Config.withDefault(fallback),
    Config.validate({ message: `${name} must be a number in (0, 1]`, validation: (n) => n > 0 && n <= 1 })
  )

const nonNegativeInt = (name: string, fallback: number) =>
  Config.integer(name).pipe(
    Config.withDefault(fallback),
    Config.validate({ message: `${name} must be 0 or a positive integer`, validation: (n) => n >= 0 })
  )

/**
 * Where the database is: the PostgreSQL server of DATABASE_URL, else the embedded PGlite in DATA_DIR. Read with the
 * other settings by the server, and alone by the keys CLI (which needs no API_KEY).
 */
const databaseFields = {
  databaseUrl: optionalSecret("DATABASE_URL"),
  dataDir: Config.string("DATA_DIR").pipe(Config.withDefault("data")),
  databasePoolSize: positiveInt("DATABASE_POOL_SIZE", 10),
  storageTimeoutMs: positiveInt("STORAGE_TIMEOUT_MS", 5_000)
}
export const databaseSettings = Config.all(databaseFields)
export type DatabaseSettings = Config.Config.Success<typeof databaseSettings>

const settings = Config.all({
  ...databaseFields,
  appEnv: Config.literal("development", "staging", "production")("APP_ENV").pipe(Config.withDefault("development")),
  host: Config.string("HOST").pipe(Config.withDefault("127.0.0.1")),
  port: Config.port("PORT").pipe(Config.withDefault(8000)),
  logLevel,
  apiKey: optionalSecret("API_KEY"),
  appSecretKey: optionalSecret("APP_SECRET_KEY"),
  hfToken: optionalSecret("HF_TOKEN"),
  hfModelName: Config.string("HF_MODEL_NAME").pipe(Config.withDefault("mistralai/Mistral-7B-Instruct-v0.3")),
  redisUrl: optionalSecret("REDIS_URL"),
  maxBodyBytes: positiveInt("MAX_BODY_BYTES", 256 * 1024),
  maxMessageChars: positiveInt("MAX_MESSAGE_CHARS", 32_000),
  shutdownGraceMs: positiveInt("SHUTDOWN_GRACE_MS", 10_000),
  sseKeepAliveMs: positiveInt("SSE_KEEPALIVE_MS", 15_000),
  corsOrigins: commaList("CORS_ORIGINS"),
  systemPrompt: Config.string("SYSTEM_PROMPT").pipe(
    Config.withDefault("You are Nexxi, a helpful, accurate and concise assistant.")
  ),
  maxNewTokens: positiveInt("MAX_NEW_TOKENS", 512),
  // Generator: which backend, and how Nexxi copes with a misbehaving model server.
  generator: Config.literal("tgi", "hf", "echo", "llama")("GENERATOR").pipe(Config.option),
  tgiUrl: Config.option(Config.string("TGI_URL")),
  // Local GGUF model (GENERATOR=llama): run in-process by llama.cpp.
  modelPath: Config.option(Config.string("MODEL_PATH")),
  llamaParallel: positiveInt("LLAMA_PARALLEL", 2),
  llamaQueueSize: nonNegativeInt("LLAMA_QUEUE_SIZE", 8),
  llamaThreads: positiveInt("LLAMA_THREADS", availableParallelism()),
  llamaContextSize: optionalPositiveInt("LLAMA_CONTEXT_SIZE"),
  llamaGpu: Config.literal("auto", "off")("LLAMA_GPU").pipe(Config.withDefault("auto")),
  tgiApiKey: optionalSecret("TGI_API_KEY"),
  generatorMaxRetries: Config.integer("GENERATOR_MAX_RETRIES").pipe(
    Config.withDefault(2),
    Config.validate({ message: "GENERATOR_MAX_RETRIES must be 0 or more", validation: (n) => n >= 0 })
  ),
  generatorRetryBaseMs: positiveInt("GENERATOR_RETRY_BASE_MS", 250),
  generatorRetryBudgetMs: positiveInt("GENERATOR_RETRY_BUDGET_MS", 5_000),
  generatorFirstTokenTimeoutMs: positiveInt("GENERATOR_FIRST_TOKEN_TIMEOUT_MS", 30_000),
  generatorIdleTimeoutMs: positiveInt("GENERATOR_IDLE_TIMEOUT_MS", 30_000),
  generatorDeadlineMs: Config.option(
    Config.integer("GENERATOR_DEADLINE_MS").pipe(
      Config.validate({ message: "GENERATOR_DEADLINE_MS must be a positive integer", validation: (n) => n > 0 })
    )
  ),
  generatorBreakerThreshold: positiveInt("GENERATOR_BREAKER_THRESHOLD", 5),
  generatorBreakerCooldownMs: positiveInt("GENERATOR_BREAKER_COOLDOWN_MS", 30_000),
  // Telemetry: traces go out by OTLP/HTTP only when an endpoint is set (the exporter reads the other OTEL_* itself).
  otelEndpoint: Config.option(Config.string("OTEL_EXPORTER_OTLP_ENDPOINT")),
  otelServiceName: Config.string("OTEL_SERVICE_NAME").pipe(Config.withDefault("nexxi")),
  otelCaptureContent: Config.boolean("OTEL_CAPTURE_CONTENT").pipe(Config.withDefault(false)),
  echoTokenDelayMs: Config.integer("ECHO_TOKEN_DELAY_MS").pipe(Config.withDefault(15)),
  // Safety: what the filter blocks and flags, and where personal data is redacted (log lines always are).
  safetyMode: Config.literal("enforce", "monitor", "off")("SAFETY_MODE").pipe(Config.withDefault("enforce")),
  safetyBlockThreshold: scoreThreshold("SAFETY_BLOCK_THRESHOLD", 0.6),
  safetyFlagThreshold: scoreThreshold("SAFETY_FLAG_THRESHOLD", 0.4),
  safetyOutputRedact: Config.boolean("SAFETY_OUTPUT_REDACT").pipe(Config.withDefault(false)),
  piiRedactStorage: Config.boolean("PII_REDACT_STORAGE").pipe(Config.withDefault(true)),
  piiRedactPrompt: Config.boolean("PII_REDACT_PROMPT").pipe(Config.withDefault(false)),
  piiTypes: commaList("PII_TYPES"),
  piiPhoneRegions: commaList("PII_PHONE_REGIONS"),
  // Sessions: where conversations are kept, for how long, and how much of them reaches the model.
  sessionTtlSeconds: positiveInt("SESSION_TTL_SECONDS", 24 * 60 * 60),
  sessionMaxTurns: positiveInt("SESSION_MAX_TURNS", 100),
  sessionMaxSessions: positiveInt("SESSION_MAX_SESSIONS", 10_000),
  sessionLockTimeoutMs: positiveInt("SESSION_LOCK_TIMEOUT_MS", 2_000),
  sessionLockTtlMs: positiveInt("SESSION_LOCK_TTL_MS", 30_000),
  redisKeyPrefix: Config.string("REDIS_KEY_PREFIX").pipe(Config.withDefault("nexxi:")),
  redisConnectTimeoutMs: positiveInt("REDIS_CONNECT_TIMEOUT_MS", 2_000),
  redisCommandTimeoutMs: positiveInt("REDIS_COMMAND_TIMEOUT_MS", 1_000),
  maxInputTokens: optionalPositiveInt("MAX_INPUT_TOKENS"),
  maxTotalTokens: optionalPositiveInt("MAX_TOTAL_TOKENS"),
  // Storage: conversations and usage in PostgreSQL (DATABASE_URL), else in an embedded PGlite in DATA_DIR.
  storageQueueSize: positiveInt("STORAGE_QUEUE_SIZE", 1_000),
  storageRetryMaxDelayMs: positiveInt("STORAGE_RETRY_MAX_DELAY_MS", 10_000),
  storageFlushTimeoutMs: positiveInt("STORAGE_FLUSH_TIMEOUT_MS", 5_000),
  // Hostile or stuck clients: how long a client may take to send its request's headers, and its whole request
  // (slowloris), and how long a response may wait for a client that stopped reading it before it is disconnected.
  httpHeadersTimeoutMs: positiveInt("HTTP_HEADERS_TIMEOUT_MS", 15_000),
  httpRequestTimeoutMs: positiveInt("HTTP_REQUEST_TIMEOUT_MS", 30_000),
  streamWriteTimeoutMs: positiveInt("STREAM_WRITE_TIMEOUT_MS", 30_000),
  // Keys and rate limits: defaults for every API key (a managed key may set its own; 0 = unlimited), enforced in
  // Redis for all replicas together when REDIS_URL is set, else in this process's memory.
  rateLimitRpm: nonNegativeInt("RATE_LIMIT_RPM", 60),
  rateLimitTpm: nonNegativeInt("RATE_LIMIT_TPM", 100_000),
  rateLimitConcurrency: nonNegativeInt("RATE_LIMIT_CONCURRENCY", 4),
  // Redis unreachable: `closed` answers 503, `open` lets requests through. Unset: open in development, else closed.
  rateLimitFailMode: Config.option(Config.literal("closed", "open")("RATE_LIMIT_FAIL_MODE")),
  authFailuresPerMinute: nonNegativeInt("AUTH_FAILURES_PER_MINUTE", 10),
  // How many proxies in front of Nexxi append to X-Forwarded-For; 0: the socket's address is the client's.
  trustProxy: nonNegativeInt("TRUST_PROXY", 0),
  // How long a replica trusts what it read about a managed key: a revoked key stops working within this time.
  apiKeyCacheMs: Config.integer("API_KEY_CACHE_MS").pipe(
    Config.withDefault(3_000),
    Config.validate({
      message: "API_KEY_CACHE_MS must be between 0 and 5000, so that a revoked key stops working within 5 s",
      validation: (n) => n >= 0 && n <= 5_000
    })
  )
})

export type Settings = Config.Config.Success<typeof settings>

/** The API key clients must send. In development Nexxi makes one up when none is configured. */
export interface ApiKeySetting {
  readonly key: Redacted.Redacted
  readonly generated: boolean
}

const requireStrongSecret = (name: string, value: Option.Option<Redacted.Redacted>) =>
  Option.match(value, {
    onNone: () => Effect.fail(new StartupError({ message: `${name} is required when APP_ENV=production` })),
    onSome: (secret) =>
      Redacted.value(secret).length < MIN_SECRET_LENGTH
        ? Effect.fail(
            new StartupError({
              message: `${name} is too weak: use at least ${MIN_SECRET_LENGTH} characters (e.g. openssl rand -hex 32)`
            })
          )
        : Effect.void
  })

const DEV_KEY_FILE = "dev-api-key"

/**
 * Without API_KEY, development uses a generated key, kept in DATA_DIR so that it survives restarts (and scripts can
 * read it), printed once at start-up. Never used in production, where API_KEY is required.
 */
const developmentKey = (dataDir: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = `${dataDir}/${DEV_KEY_FILE}`
    const existing = yield* fs.readFileString(path).pipe(
      Effect.map((text) => text.trim()),
      Effect.orElseSucceed(() => "")
    )
    const key = existing.length >= MIN_SECRET_LENGTH ? existing : `nx_dev_${randomBytes(24).toString("base64url")}`
    if (key !== existing) {
      yield* fs.makeDirectory(dataDir, { recursive: true })
      yield* fs.writeFileString(path, key + "\n", { mode: 0o600 })
    }
    // Printed on purpose, so that `npm start` works out of the box; never logged.
    yield* Console.error(
      `No API_KEY is set: using the development key kept in ${path}\n  X-API-Key: ${key}\n` +
        `Set API_KEY (at least ${MIN_SECRET_LENGTH} characters) to choose your own.`
    )
    return Redacted.make(key)
  }).pipe(
    Effect.mapError((error) => new StartupError({ message: `cannot keep the development key: ${error.message}` }))
  )

export class AppConfig extends Effect.Service<AppConfig>()("nexxi/AppConfig", {
  effect: Effect.gen(function* () {
    const config = yield* settings
    if (config.appEnv === "production") {
      yield* requireStrongSecret("API_KEY", config.apiKey)
      yield* requireStrongSecret("APP_SECRET_KEY", config.appSecretKey)
    }
    const apiKey: ApiKeySetting = Option.isSome(config.apiKey)
      ? { key: config.apiKey.value, generated: false }
      : { key: yield* developmentKey(config.dataDir), generated: true }
    return { ...config, apiKey, isProduction: config.appEnv === "production" } as const
  }),
  dependencies: [NodeFileSystem.layer]
}) {}
