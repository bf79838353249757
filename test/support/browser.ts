/**
 * Headless Chromium driven by playwright-core, for end-to-end tests of the web page. The browser is the system's
 * (Debian's `chromium` by default, `CHROMIUM_PATH` to choose another), started with a fresh profile and without
 * anything that would reach the network on its own. Without a browser the tests are skipped with a line saying so;
 * under `CI=true` they fail instead, so that CI cannot turn green by skipping them.
 */
import { describe, expect, it } from "@effect/vitest"
import { existsSync } from "node:fs"
import { mkdir } from "node:fs/promises"
import { join } from "node:path"
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core"

const candidates = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]

export const chromiumArgs = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync"
]

/** The browser to test with, or undefined when its tests must not run (skipped, or failed under CI). */
export const chromiumPath = (tests: string): string | undefined => {
  const found = [process.env.CHROMIUM_PATH, ...candidates].find((path) => path && existsSync(path))
  if (found !== undefined) return found
  if (process.env.CI === "true") {
    describe(tests, () => {
      it("need Chromium", () => {
        expect.fail(`No Chromium found (CHROMIUM_PATH, ${candidates.join(", ")}): under CI=true ${tests} must run`)
      })
    })
  } else {
    console.warn(`SKIPPED ${tests}: no Chromium found (set CHROMIUM_PATH)`)
  }
  return undefined
}

/** playwright's `launch` gives each browser a fresh temporary profile, removed when it closes. */
export const launchChromium = (executablePath: string): Promise<Browser> =>
  chromium.launch({ executablePath, headless: true, args: chromiumArgs, timeout: 20_000 })

export interface PageWatch {
  /** Dialogs (alert, confirm, prompt) the page opened: a script from a reply would typically open one. */
  readonly dialogs: ReadonlyArray<string>
  /** Uncaught errors in the page. */
  readonly pageErrors: ReadonlyArray<string>
  /** Errors the browser logged, e.g. what the content security policy refused. */
  readonly consoleErrors: ReadonlyArray<string>
  /** Requests to anywhere but the server under test. */
  readonly foreignRequests: ReadonlyArray<string>
}

/** A new context (its own session storage) and page, recording what a test wants to be sure did not happen. */
export const openPage = async (
  browser: Browser,
  origin: string,
  options: { readonly viewport?: { width: number; height: number } } = {}
): Promise<{ context: BrowserContext; page: Page; watch: PageWatch }> => {
  const context = await browser.newContext({ viewport: options.viewport ?? { width: 1100, height: 720 } })
  context.setDefaultTimeout(10_000)
  const page = await context.newPage()
  const watch = {
    dialogs: [] as Array<string>,
    pageErrors: [] as Array<string>,
    consoleErrors: [] as Array<string>,
    foreignRequests: [] as Array<string>
  }
  page.on("dialog", (dialog) => {
    watch.dialogs.push(`${dialog.type()}: ${dialog.message()}`)
    void dialog.dismiss()
  })
  page.on("pageerror", (error) => watch.pageErrors.push(String(error)))
  page.on("console", (message) => {
    if (message.type() === "error") watch.consoleErrors.push(message.text())
  })
  page.on("request", (request) => {
    const url = request.url()
    if (!url.startsWith(origin + "/") && !url.startsWith("data:")) watch.foreignRequests.push(url)
  })
  return { context, page, watch }
}

export const ARTIFACTS_DIR = "test-artifacts"

/** A screenshot kept as a test artifact (test-artifacts/ is git-ignored). */
export const saveScreenshot = async (page: Page, name: string) => {
  await mkdir(ARTIFACTS_DIR, { recursive: true })
  const path = join(ARTIFACTS_DIR, name)
  await page.screenshot({ path })
  return path
}
