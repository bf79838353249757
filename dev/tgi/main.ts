/**
 * `npm run tgi:dev`: the TGI-compatible development server, configured from the environment.
 *
 * TGI_DEV_PORT (8080), TGI_DEV_HOST (127.0.0.1), TGI_DEV_TOKENS_PER_SECOND (40; 0 = as fast as possible),
 * TGI_DEV_FIRST_TOKEN_MS (150), TGI_DEV_MODEL_ID, TGI_DEV_REPLY, TGI_DEV_REPLY_TOKENS, TGI_DEV_MAX_INPUT_TOKENS,
 * TGI_DEV_MAX_TOTAL_TOKENS, TGI_DEV_MAX_CONCURRENT_REQUESTS, TGI_DEV_KEEP_ALIVE_MS, TGI_DEV_HEALTHY (true|false),
 * TGI_DEV_FAULT (JSON, e.g. {"kind":"status","status":503}), TGI_DEV_FAIL_TIMES.
 */
import { parseTgiOverrides, startTgiServer, type TgiServerOptions } from "./server.js"

const env = process.env

const number = (name: string): number | undefined => {
  const raw = env[name]
  if (raw === undefined || raw === "") return undefined
  const value = raw === "Infinity" ? Infinity : Number(raw)
  if (!(value >= 0)) throw new Error(`${name} must be a number >= 0, got "${raw}"`)
  return value
}

const readOptions = (): TgiServerOptions => {
  const faultJson = env.TGI_DEV_FAULT
  const { fault, failTimes } = parseTgiOverrides({
    ...(faultJson ? { fault: JSON.parse(faultJson) as unknown } : {}),
    ...(number("TGI_DEV_FAIL_TIMES") !== undefined ? { failTimes: number("TGI_DEV_FAIL_TIMES") } : {})
  })
  const healthy = env.TGI_DEV_HEALTHY
  if (healthy !== undefined && healthy !== "true" && healthy !== "false")
    throw new Error(`TGI_DEV_HEALTHY must be true or false, got "${healthy}"`)
  const options = {
    port: number("TGI_DEV_PORT") ?? 8080,
    host: env.TGI_DEV_HOST || "127.0.0.1",
    // Development defaults feel like a 7B model on a GPU; tests use the library's fast defaults instead.
    tokensPerSecond: number("TGI_DEV_TOKENS_PER_SECOND") ?? 40,
    firstTokenDelayMs: number("TGI_DEV_FIRST_TOKEN_MS") ?? 150,
    modelId: env.TGI_DEV_MODEL_ID || undefined,
    reply: env.TGI_DEV_REPLY,
    replyTokens: number("TGI_DEV_REPLY_TOKENS"),
    maxInputTokens: number("TGI_DEV_MAX_INPUT_TOKENS"),
    maxTotalTokens: number("TGI_DEV_MAX_TOTAL_TOKENS"),
    maxConcurrentRequests: number("TGI_DEV_MAX_CONCURRENT_REQUESTS"),
    keepAliveMs: number("TGI_DEV_KEEP_ALIVE_MS"),
    healthy: healthy === undefined ? undefined : healthy === "true",
    fault,
    failTimes
  }
  // Unset variables keep the library's defaults (exactOptionalPropertyTypes: drop the undefined keys).
  return Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as TgiServerOptions
}

const main = async () => {
  const server = await startTgiServer(readOptions())
  console.log(`TGI dev server (${server.options.modelId}) listening on ${server.url}`)
  const stop = () => void server.close()
  // Closing frees every timer and socket, so the process then exits on its own.
  process.once("SIGINT", stop)
  process.once("SIGTERM", stop)
}

main().catch((error: unknown) => {
  console.error(`tgi:dev: ${error instanceof Error ? error.message : String(error)}`)
  process.exitCode = 1
})
