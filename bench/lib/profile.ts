/** The hottest functions of a V8 CPU profile (`node --cpu-prof`), by self time, with their files. */
import { readFileSync } from "node:fs"

interface ProfileNode {
  readonly id: number
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number }
  readonly children?: ReadonlyArray<number>
}

interface Profile {
  readonly nodes: ReadonlyArray<ProfileNode>
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
}

const shorten = (url: string) =>
  url
    .replace(/^file:\/\//, "")
    .replace(/^.*\/node_modules\//, "~/")
    .replace(/^.*\/(src|dev|bench)\//, "$1/")

export const summarizeProfile = (file: string, top: number): string => {
  const profile = JSON.parse(readFileSync(file, "utf8")) as Profile
  const selfMicros = new Map<number, number>()
  profile.samples.forEach((id, index) =>
    selfMicros.set(id, (selfMicros.get(id) ?? 0) + (profile.timeDeltas[index] ?? 0))
  )
  const byFunction = new Map<string, number>()
  const byArea = new Map<string, number>()
  let total = 0
  for (const node of profile.nodes) {
    const micros = selfMicros.get(node.id) ?? 0
    total += micros
    const { functionName, url, lineNumber } = node.callFrame
    const where = shorten(url)
    const name = `${functionName || "(anonymous)"}  ${where}${where ? `:${lineNumber + 1}` : ""}`
    byFunction.set(name, (byFunction.get(name) ?? 0) + micros)
    const area =
      functionName === "(idle)" || functionName === "(program)" || functionName === "(garbage collector)"
        ? functionName
        : where.startsWith("src/")
          ? where.split(/[/.]/).slice(0, 2).join("/")
          : where.startsWith("~/")
            ? where
                .split("/")
                .slice(0, where.startsWith("~/@") ? 3 : 2)
                .join("/")
            : where === ""
              ? "(native)"
              : where.startsWith("node:")
                ? "node:" + where.slice(5).split("/")[0]
                : where
    byArea.set(area, (byArea.get(area) ?? 0) + micros)
  }
  // Time attributed to the nearest frame of Nexxi's own code (src/) up the stack, or to the library area below it.
  const parent = new Map<number, ProfileNode>()
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node)
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const bySource = new Map<string, number>()
  for (const [id, micros] of selfMicros) {
    let node = byId.get(id)
    const leafName = node?.callFrame.functionName ?? ""
    if (leafName === "(idle)") continue
    let label: string | undefined
    while (node !== undefined && label === undefined) {
      const where = shorten(node.callFrame.url)
      if (where.startsWith("src/"))
        label = `${node.callFrame.functionName || "(anonymous)"}  ${where}:${node.callFrame.lineNumber + 1}`
      node = parent.get(node.id)
    }
    const leaf = byId.get(id)!
    const leafWhere = shorten(leaf.callFrame.url)
    const area = leafWhere.startsWith("~/")
      ? leafWhere
          .split("/")
          .slice(0, leafWhere.startsWith("~/@") ? 3 : 2)
          .join("/")
      : leafWhere.startsWith("wasm")
        ? "wasm"
        : leafName.startsWith("(")
          ? leafName
          : "(native/node)"
    const key = label ?? `(no src frame) ${area}`
    bySource.set(key, (bySource.get(key) ?? 0) + micros)
  }
  const busy = total - (byFunction.get("(idle)  ") ?? 0)
  const percent = (micros: number) => `${((100 * micros) / busy).toFixed(1).padStart(5)} %`
  const lines = [`busy ${(busy / 1e6).toFixed(1)} s of ${(total / 1e6).toFixed(1)} s; by area (self time):`]
  for (const [area, micros] of [...byArea].sort((a, b) => b[1] - a[1]).slice(0, top))
    if (area !== "(idle)") lines.push(`  ${percent(micros)}  ${area}`)
  lines.push("hottest functions (self time):")
  for (const [name, micros] of [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, top))
    if (!name.startsWith("(idle)")) lines.push(`  ${percent(micros)}  ${name}`)
  lines.push("by nearest src/ frame on the stack (inclusive of libraries it calls):")
  for (const [name, micros] of [...bySource].sort((a, b) => b[1] - a[1]).slice(0, top))
    lines.push(`  ${percent(micros)}  ${name}`)
  return lines.join("\n")
}
