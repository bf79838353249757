/** Nexxi as a process: start-up checks, the generated development key, `.env`, and graceful shutdown. */
import { afterEach, describe, expect, it } from "vitest"
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { type NexxiProcess, spawnNexxi } from "./support/process.js"
import { readSse } from "./support/sse.js"

const STRONG = "0123456789abcdef0123456789abcdef"
const running: Array<NexxiProcess> = []
const start = async (env: Record<string, string>, options: { cwd?: string } = {}) => {
  const nexxi = await spawnNexxi(env, options)
  running.push(nexxi)
  return nexxi
}
afterEach(() => {
  for (const nexxi of running.splice(0)) if (nexxi.child.exitCode === null) nexxi.child.kill("SIGKILL")
})

const chat = (nexxi: NexxiProcess, key: string, path = "/v1/chat", message = "hello") =>
  fetch(nexxi.url + path, {
    method: "POST",
    headers: { "content-type": "application/json", "x-api-key": key },
    body: JSON.stringify({ message })
  })

describe("start-up", () => {
  it.each([
    [{}, "API_KEY is required when APP_ENV=production"],
    [{ API_KEY: "short" }, "API_KEY is too weak"],
    [{ API_KEY: STRONG }, "APP_SECRET_KEY is required when APP_ENV=production"],
    [{ API_KEY: STRONG, APP_SECRET_KEY: "short" }, "APP_SECRET_KEY is too weak"]
  ])("in production refuses to start with weak secrets (%j)", async (env, line) => {
    const nexxi = await start({ APP_ENV: "production", ...env })
    expect(await nexxi.exited).toBe(1)
    const lines = nexxi.stderr().trim().split("\n")
    expect(lines).toHaveLength(1)
    expect(lines[0]!.startsWith(`nexxi: cannot start: ${line}`), lines[0]).toBe(true)
  })

  it("in development without API_KEY uses a generated key, kept in DATA_DIR across restarts with the conversations", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "nexxi-data-"))
    try {
      const first = await start({ DATA_DIR: dataDir })
      await first.waitForOutput("Listening on")
      const key = /X-API-Key: (\S+)/.exec(first.stderr())![1]!
      expect(key.length).toBeGreaterThanOrEqual(32)
      expect(readFileSync(join(dataDir, "dev-api-key"), "utf8").trim()).toBe(key)
      expect(statSync(join(dataDir, "dev-api-key")).mode & 0o077).toBe(0)
      const firstChat = await chat(first, key)
      expect(firstChat.status).toBe(200)
      const { session_id } = (await firstChat.json()) as { session_id: string }
      expect((await chat(first, "not-the-key")).status).toBe(401)
      expect(first.stdout()).not.toContain(key)
      // Straight to shutdown: the turn may still be queued for the embedded database, and is written before exit.
      first.child.kill("SIGTERM")
      expect(await first.exited).toBe(0)

      const second = await start({ DATA_DIR: dataDir })
      await second.waitForOutput("Listening on")
      expect((await chat(second, key)).status).toBe(200)
      const stored = await fetch(`${second.url}/v1/conversations/${session_id}`, { headers: { "x-api-key": key } })
      expect(stored.status).toBe(200)
      const { title, messages } = (await stored.json()) as { title: string; messages: Array<{ role: string }> }
      expect([title, messages.map((message) => message.role)]).toEqual(["hello", ["user", "assistant"]])
    } finally {
      rmSync(dataDir, { recursive: true, force: true })
    }
  })

  it("reads a .env file in the working directory", async () => {
    const dir = mkdtempSync(join(tmpdir(), "nexxi-env-"))
    try {
      writeFileSync(join(dir, ".env"), `# a comment\nAPI_KEY=from-dotenv-${STRONG}\nSYSTEM_PROMPT="You are terse."\n`)
      const nexxi = await start({ DATA_DIR: join(dir, "data") }, { cwd: dir })
      await nexxi.waitForOutput("Listening on")
      expect(nexxi.stderr()).not.toContain("No API_KEY is set")
      expect((await chat(nexxi, `from-dotenv-${STRONG}`)).status).toBe(200)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe("graceful shutdown", () => {
  it("on SIGTERM stops accepting, lets a live stream finish, and exits 0", async () => {
    const nexxi = await start({ API_KEY: STRONG, ECHO_TOKEN_DELAY_MS: "40", SHUTDOWN_GRACE_MS: "10000" })
    await nexxi.waitForOutput("Listening on")
    const response = await chat(nexxi, STRONG, "/v1/chat/stream", "a reply long enough to be still streaming")
    const events = readSse(response)
    expect(JSON.parse((await events.next())!.data).finished).toBe(false)

    nexxi.child.kill("SIGTERM")
    await nexxi.waitForOutput("Shutting down")
    await expect(fetch(nexxi.url + "/health")).rejects.toThrow()

    const rest = (await events.rest()).map((event) => JSON.parse(event.data))
    expect(rest.at(-1)).toMatchObject({ finished: true, model: "echo" })
    expect(await nexxi.exited).toBe(0)
  })

  it("after SHUTDOWN_GRACE_MS interrupts what is still streaming, and exits 0", async () => {
    const nexxi = await start({ API_KEY: STRONG, ECHO_TOKEN_DELAY_MS: "500", SHUTDOWN_GRACE_MS: "300" })
    await nexxi.waitForOutput("Listening on")
    const response = await chat(nexxi, STRONG, "/v1/chat/stream", "this reply would take many seconds to finish")
    const events = readSse(response)
    await events.next()
    nexxi.child.kill("SIGTERM")
    await nexxi.waitForOutput("Shutdown grace period over")
    const rest = await events.rest().catch(() => [])
    expect(rest.some((event) => JSON.parse(event.data).finished === true)).toBe(false)
    expect(await nexxi.exited).toBe(0)
  })
})
