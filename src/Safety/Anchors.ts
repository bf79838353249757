/**
 * Which of many literal strings occur in a text, and where, in one pass: an Aho-Corasick automaton compiled to a
 * dense transition table, so the scan costs one table lookup per character whatever the number of strings. Detectors
 * use it to try a pattern only where a word it starts with occurs: most messages contain few of them. The detectors
 * of folded text share one automaton (`foldedAnchors`), so that a message is scanned once for all of them; a
 * `LedPattern` is a regular expression kept with the words it starts with, for that.
 */

/**
 * Where each anchor occurs: for anchor `a`, `first[a]` is the index of its last occurrence in `occurrence` (-1 when
 * it does not occur), and `next[i]` the index of the occurrence before `i` (-1 at the first). Occurrences are
 * encoded as `position * 2 + 1` when the anchor starts a word (preceded by a character other than a-z, A-Z, 0-9 or
 * "_", or at the start of the text) and `position * 2` otherwise. See `startsWord` and `positionOf`. Flat arrays,
 * so that a scan allocates nothing per occurrence.
 */
export interface Occurrences {
  readonly first: Int32Array
  readonly next: ReadonlyArray<number>
  readonly occurrence: ReadonlyArray<number>
}

export const startsWord = (occurrence: number) => (occurrence & 1) === 1
export const positionOf = (occurrence: number) => occurrence >>> 1

/** Whether anchor `anchor` occurs at all. */
export const occurs = (found: Occurrences, anchor: number) => anchor >= 0 && found.first[anchor]! !== -1

export interface Anchor {
  readonly text: string
  /** Record only occurrences that start a word ("i" in "i will", not in "this"): far fewer to try. */
  readonly wordStartOnly: boolean
}

export interface AnchorScanner {
  readonly scan: (text: string) => Occurrences
  /** The index of an anchor in `Occurrences` (-1 when it is not one). */
  readonly index: (anchor: string) => number
}

const isWordCode = (code: number) =>
  (code >= 97 && code <= 122) || (code >= 48 && code <= 57) || code === 95 || (code >= 65 && code <= 90)

/** The automaton, recording occurrences into a fresh `Occurrences` (indexed like `anchors`). */
const makeAhoCorasick = (
  anchors: ReadonlyArray<string>,
  wordStartOnly: ReadonlyArray<boolean>,
  caseInsensitive: boolean
): ((text: string) => Occurrences) => {
  // The alphabet: one column per UTF-16 code unit used by an anchor, column 0 for every other one.
  const columnOf = new Map<number, number>()
  for (const anchor of anchors) {
    for (let position = 0; position < anchor.length; position++) {
      const code = anchor.charCodeAt(position)
      if (!columnOf.has(code)) columnOf.set(code, columnOf.size + 1)
    }
  }
  const columns = columnOf.size + 1
  const asciiColumn = new Int32Array(128)
  for (let code = 0; code < 128; code++) {
    const folded = caseInsensitive && code >= 65 && code <= 90 ? code + 32 : code
    asciiColumn[code] = columnOf.get(folded) ?? 0
  }

  // The trie.
  const children: Array<Map<number, number>> = [new Map()]
  const outputs: Array<Array<number>> = [[]]
  anchors.forEach((anchor, position) => {
    let state = 0
    for (let offset = 0; offset < anchor.length; offset++) {
      const column = columnOf.get(anchor.charCodeAt(offset))!
      let child = children[state]!.get(column)
      if (child === undefined) {
        child = children.length
        children.push(new Map())
        outputs.push([])
        children[state]!.set(column, child)
      }
      state = child
    }
    outputs[state]!.push(position)
  })

  // Failure links breadth-first, folded into a complete transition table; outputs linked along failures.
  const states = children.length
  const delta = new Int32Array(states * columns)
  const fail = new Int32Array(states)
  const outputLink = new Int32Array(states).fill(-1)
  const queue: Array<number> = []
  for (const [column, child] of children[0]!) {
    delta[column] = child
    queue.push(child)
  }
  for (let head = 0; head < queue.length; head++) {
    const state = queue[head]!
    const fallback = fail[state]!
    outputLink[state] = outputs[fallback]!.length > 0 ? fallback : outputLink[fallback]!
    for (let column = 0; column < columns; column++) {
      const child = children[state]!.get(column)
      if (child === undefined) {
        delta[state * columns + column] = delta[fallback * columns + column]!
      } else {
        delta[state * columns + column] = child
        fail[child] = delta[fallback * columns + column]!
        queue.push(child)
      }
    }
  }
  // Every anchor ending in each state, along its whole failure chain, flattened: `ends[endsFrom[s]..endsFrom[s+1]]`.
  const endsFrom = new Int32Array(states + 1)
  const ends: Array<number> = []
  for (let state = 0; state < states; state++) {
    endsFrom[state] = ends.length
    for (
      let output = outputs[state]!.length > 0 ? state : outputLink[state]!;
      output !== -1;
      output = outputLink[output]!
    )
      ends.push(...outputs[output]!)
  }
  endsFrom[states] = ends.length
  const endAnchors = Int32Array.from(ends)
  const lengths = Int32Array.from(anchors, (anchor) => anchor.length)
  const anyPosition = Uint8Array.from(wordStartOnly, (only) => (only ? 0 : 1))
  // The scan's table holds, for each transition, where the next state's row starts, times two, plus one when some
  // anchor ends there: one load per character, and no multiplication.
  const transitions = new Int32Array(states * columns)
  for (let entry = 0; entry < transitions.length; entry++) {
    const target = delta[entry]!
    transitions[entry] = target * columns * 2 + (endsFrom[target + 1]! > endsFrom[target]! ? 1 : 0)
  }

  return (text) => {
    const first = new Int32Array(anchors.length).fill(-1)
    const before: Array<number> = []
    const occurrence: Array<number> = []
    let row = 0
    for (let position = 0; position < text.length; position++) {
      const code = text.charCodeAt(position)
      const entry = transitions[row + (code < 128 ? asciiColumn[code]! : (columnOf.get(code) ?? 0))]!
      row = entry >> 1
      if ((entry & 1) === 0) continue
      const state = row / columns
      const to = endsFrom[state + 1]!
      for (let end = endsFrom[state]!; end < to; end++) {
        const anchorIndex = endAnchors[end]!
        const start = position - lengths[anchorIndex]! + 1
        const wordStart = start === 0 || !isWordCode(text.charCodeAt(start - 1))
        if (wordStart || anyPosition[anchorIndex] === 1) {
          before.push(first[anchorIndex]!)
          first[anchorIndex] = occurrence.length
          occurrence.push(start * 2 + (wordStart ? 1 : 0))
        }
      }
    }
    return { first, next: before, occurrence }
  }
}

/** `caseInsensitive` folds A-Z to a-z while scanning (anchors are then given in lower case). */
export const makeAnchorScanner = (anchors: ReadonlyArray<Anchor>, caseInsensitive = false): AnchorScanner => {
  // An anchor wanted anywhere by one detector is recorded everywhere.
  const byText = new Map<string, boolean>()
  for (const { text, wordStartOnly } of anchors) byText.set(text, (byText.get(text) ?? true) && wordStartOnly)
  const unique = [...byText.keys()]
  const indexOf = new Map(unique.map((anchor, index) => [anchor, index]))
  const scan = makeAhoCorasick(
    unique,
    unique.map((text) => byText.get(text)!),
    caseInsensitive
  )
  return { scan, index: (anchor) => indexOf.get(anchor) ?? -1 }
}

/**
 * One automaton for several detectors of the same kind of text: each adds its anchors (at module load), and the
 * automaton over all of them is built on the first scan after an addition. Anchor indexes are stable as anchors are
 * added. A caller that runs several of these detectors on one text scans it once and hands them the occurrences.
 */
export interface SharedAnchorScanner extends AnchorScanner {
  /** Adds anchors; look them up with `index` (valid at once). */
  readonly add: (anchors: ReadonlyArray<Anchor>) => void
}

export const makeSharedAnchorScanner = (caseInsensitive = false): SharedAnchorScanner => {
  const byText = new Map<string, boolean>()
  const indexOf = new Map<string, number>()
  let scanText: ((text: string) => Occurrences) | undefined
  return {
    add: (anchors) => {
      for (const { text, wordStartOnly } of anchors) {
        if (!indexOf.has(text)) indexOf.set(text, indexOf.size)
        byText.set(text, (byText.get(text) ?? true) && wordStartOnly)
      }
      scanText = undefined
    },
    index: (anchor) => indexOf.get(anchor) ?? -1,
    scan: (text) => {
      if (scanText === undefined) {
        const unique = [...indexOf.keys()]
        scanText = makeAhoCorasick(
          unique,
          unique.map((anchor) => byText.get(anchor)!),
          caseInsensitive
        )
      }
      return scanText(text)
    }
  }
}

/** The anchors of every detector that reads folded text (Normalize.ts): injection signals, embedded data, hints. */
export const foldedAnchors = makeSharedAnchorScanner()

/**
 * A pattern that starts with one of a few literal words (`leads`), kept in two forms: `full`, to search a whole text,
 * and `sticky`, tried only where a lead occurs (the leads are added to a shared scanner). `before` is what must
 * precede the lead: optional words when the lead must start a word (the sticky form drops them: a match exists with
 * them if one exists without), or a context matched as a lookbehind when it need not (`wordStart: false`).
 */
export interface LedPattern {
  readonly leads: ReadonlyArray<string>
  readonly wordStart: boolean
  readonly full: RegExp
  readonly sticky: RegExp
  /** The leads' indexes in the scanner's `Occurrences`. */
  readonly anchors: ReadonlyArray<number>
}

export const ledPattern = (
  scanner: SharedAnchorScanner,
  leads: ReadonlyArray<string>,
  source: string,
  { before = "", wordStart = true, flags = "" }: { before?: string; wordStart?: boolean; flags?: string } = {}
): LedPattern => {
  scanner.add(leads.map((text) => ({ text, wordStartOnly: wordStart })))
  return {
    leads,
    wordStart,
    full: new RegExp(wordStart ? `\\b${before}${source}` : `${before}${source}`, flags),
    sticky: new RegExp(wordStart || before === "" ? source : `(?<=${before})${source}`, "y"),
    anchors: [...new Set(leads.map(scanner.index))]
  }
}

/** Where a lead of `pattern` occurs in `from <= position < to` (in no particular order). */
export const leadPositions = (pattern: LedPattern, found: Occurrences, from: number, to: number): Array<number> => {
  const result: Array<number> = []
  for (const anchor of pattern.anchors) {
    for (let at = found.first[anchor]!; at !== -1; at = found.next[at]!) {
      const occurrence = found.occurrence[at]!
      const position = positionOf(occurrence)
      if (position >= from && position < to && (!pattern.wordStart || startsWord(occurrence))) result.push(position)
    }
  }
  return result
}

/**
 * Whether `pattern` matches inside `slice`, which is `text.slice(from, to)` of the text `found` was scanned from, as
 * `pattern.full.test(slice)` would say: tried only where one of its leads occurs.
 */
export const matchesIn = (
  pattern: LedPattern,
  found: Occurrences,
  slice: string,
  from = 0,
  to = slice.length
): boolean => {
  for (const position of leadPositions(pattern, found, from, to)) {
    pattern.sticky.lastIndex = position - from
    if (pattern.sticky.test(slice)) return true
  }
  return false
}
