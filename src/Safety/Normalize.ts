/**
 * Normalisation before injection scoring: the patterns are written once, for plain lower-case text, and every
 * disguise an attacker can put on a phrase is taken off first.
 *
 * - `fold`: Unicode NFKC (full-width and mathematical letters, ligatures), invisible and bidi-control characters
 *   removed, lower case, Latin diacritics stripped (so "précédentes" meets "precedentes"), look-alike letters from
 *   Cyrillic and Greek mapped to Latin, runs of blanks collapsed (newlines are kept: chat delimiters live at line
 *   starts).
 * - `deobfuscate`: leetspeak inside words ("1gn0r3"), spaced-out letters ("i g n o r e") and words broken by
 *   hyphens ("i-nstruction") undone, when present.
 *
 * Every step is a single pass or a regular expression with one character class per repetition, so the cost is linear
 * in the length of the text.
 */

/**
 * Characters that render as nothing or only steer direction: soft hyphen, combining grapheme joiner, Hangul fillers,
 * Mongolian and variation selectors, zero-width space/joiners, bidi marks, embeddings, overrides and isolates, word
 * joiner and invisible operators, BOM, and the Unicode tag block (decoded separately, see Decode.ts).
 */
const INVISIBLE =
  /[\u00AD\u061C\u115F\u200B-\u200F\u202A-\u202E\u2060-\u206F\u3164\uFEFF\uFFA0]|\u034F|\u1160|\u17B4|\u17B5|[\u180B-\u180F]|[\uFE00-\uFE0F]|\uDB40[\uDC00-\uDC7F]/g

/** The invisible characters that have no business in ordinary text (zero-width joiners do: emoji, Indic scripts). */
const SUSPICIOUS_INVISIBLE = /[\u200B\u202A-\u202E\u2060-\u2064\u2066-\u2069\uFEFF]|\uDB40[\uDC00-\uDC7F]/g

/** How many invisible characters an attacker could use to split a phrase. */
export const countSuspiciousInvisible = (text: string): number => {
  let count = 0
  SUSPICIOUS_INVISIBLE.lastIndex = 0
  while (SUSPICIOUS_INVISIBLE.exec(text) !== null) count++
  return count
}

/** Combining diacritics of Latin, Greek and Cyrillic letters, and Arabic harakat. */
const DIACRITICS = /[\u0300-\u036F\u064B-\u065F\u0670]/g

/** Letters that NFD does not decompose but readers see as a Latin letter. */
const LATIN_FOLDS: Readonly<Record<string, string>> = {
  // Typographic quotes and apostrophes, so that "don’t" meets "don't".
  "‘": "'",
  "’": "'",
  "‚": "'",
  "‛": "'",
  "“": '"',
  "”": '"',
  "„": '"',
  "«": '"',
  "»": '"',
  ß: "ss",
  ı: "i",
  ł: "l",
  ø: "o",
  đ: "d",
  ð: "d",
  æ: "ae",
  œ: "oe",
  ŀ: "l",
  ħ: "h"
}
const LATIN_FOLD_CHARS = new RegExp(`[${Object.keys(LATIN_FOLDS).join("")}]`, "g")

/**
 * Cyrillic and Greek lower-case letters (and Latin small capitals) that look like a Latin letter. Applied to whole
 * texts that are mostly Latin, and to mixed-script words anywhere, so that Russian or Greek prose stays intact.
 */
const CONFUSABLES: Readonly<Record<string, string>> = {
  // Cyrillic
  а: "a",
  в: "b",
  е: "e",
  ё: "e",
  з: "3",
  к: "k",
  м: "m",
  н: "h",
  о: "o",
  р: "p",
  с: "c",
  т: "t",
  у: "y",
  х: "x",
  ѕ: "s",
  і: "i",
  ї: "i",
  ј: "j",
  һ: "h",
  ԁ: "d",
  ԛ: "q",
  ԝ: "w",
  ӏ: "l",
  ɡ: "g",
  // Greek
  α: "a",
  β: "b",
  γ: "y",
  ε: "e",
  η: "n",
  ι: "i",
  κ: "k",
  ν: "v",
  ο: "o",
  ρ: "p",
  τ: "t",
  υ: "u",
  χ: "x",
  ω: "w",
  // Latin small capitals and other look-alikes NFKC keeps
  ᴀ: "a",
  ʙ: "b",
  ᴄ: "c",
  ᴅ: "d",
  ᴇ: "e",
  ɢ: "g",
  ʜ: "h",
  ɪ: "i",
  ᴊ: "j",
  ᴋ: "k",
  ʟ: "l",
  ᴍ: "m",
  ɴ: "n",
  ᴏ: "o",
  ᴘ: "p",
  ʀ: "r",
  ꜱ: "s",
  ᴛ: "t",
  ᴜ: "u",
  ᴠ: "v",
  ᴡ: "w",
  ʏ: "y",
  ᴢ: "z"
}
const CONFUSABLE_CHARS = new RegExp(`[${Object.keys(CONFUSABLES).join("")}]`, "g")
const HAS_CONFUSABLE = new RegExp(`[${Object.keys(CONFUSABLES).join("")}]`)
/** A word of Latin letters and look-alikes: one that mixes both is a disguise (no real word in any language does). */
const LATINISH_WORD = new RegExp(`[a-z${Object.keys(CONFUSABLES).join("")}]+`, "g")
const HAS_LATIN = /[a-z]/

const mapConfusables = (word: string) => word.replace(CONFUSABLE_CHARS, (char) => CONFUSABLES[char] ?? char)
const mapIfMixed = (word: string) => (HAS_LATIN.test(word) && HAS_CONFUSABLE.test(word) ? mapConfusables(word) : word)

/** True when Latin letters outnumber Cyrillic and Greek ones: look-alikes are then disguise, not language. */
const mostlyLatin = (text: string): boolean => {
  let latin = 0
  let other = 0
  for (let index = 0; index < text.length; index++) {
    const code = text.charCodeAt(index)
    if (code >= 0x61 && code <= 0x7a) latin++
    else if (code >= 0x370 && code <= 0x52f) other++
  }
  return latin > other
}

const NON_ASCII = /[\u0080-\uFFFF]/

/** Runs of blanks become one space, and blank lines one newline; single spaces (most of them) are left alone. */
const collapseBlanks = (text: string) =>
  text.replace(/[^\S\n]*\n\s*|[^\S\n]{2,}|[^\S\n ]/g, (blanks) => (blanks.includes("\n") ? "\n" : " "))

/** Lower-cased, NFKC-normalised text without invisible characters, diacritics or look-alike letters. */
export const fold = (text: string): string => {
  // Plain ASCII has nothing to normalise but case and blanks: the common case, kept cheap.
  if (!NON_ASCII.test(text)) return collapseBlanks(text.toLowerCase())
  let folded = text.normalize("NFKC").replace(INVISIBLE, "").toLowerCase()
  folded = folded.normalize("NFD").replace(DIACRITICS, "").normalize("NFC")
  folded = folded.replace(LATIN_FOLD_CHARS, (char) => LATIN_FOLDS[char] ?? char)
  if (HAS_CONFUSABLE.test(folded)) {
    folded = mostlyLatin(folded) ? mapConfusables(folded) : folded.replace(LATINISH_WORD, mapIfMixed)
  }
  return collapseBlanks(folded)
}

const LEET: Readonly<Record<string, string>> = {
  "0": "o",
  "1": "i",
  "3": "e",
  "4": "a",
  "5": "s",
  "7": "t",
  "8": "b",
  "9": "g",
  "@": "a",
  $: "s",
  "!": "i",
  "|": "l",
  "+": "t"
}

const LEET_CHARS = "0123456789@$!|+"
const isLeetChar = (char: string | undefined) => char !== undefined && LEET_CHARS.includes(char)
const isLeetRunChar = (char: string | undefined) =>
  char !== undefined && ((char >= "a" && char <= "z") || isLeetChar(char))
/** Where a letter touches a leet symbol: the only places worth a closer look. */
const LEET_CONTACT = /[a-z][0-9@$!|+]|[0-9@$!|+][a-z]/g

/**
 * Rewrites the runs of letters and leet symbols that mix both ("1gn0r3" → "ignore"), leaving numbers, "mp3"-like
 * words (one symbol, at most two letters) and "a+b" alone. Each run is visited once.
 */
const unleet = (text: string): string => {
  let output = ""
  let cursor = 0
  LEET_CONTACT.lastIndex = 0
  for (let contact = LEET_CONTACT.exec(text); contact !== null; contact = LEET_CONTACT.exec(text)) {
    let start = contact.index
    while (start > cursor && isLeetRunChar(text[start - 1])) start--
    let end = contact.index + 2
    while (end < text.length && isLeetRunChar(text[end])) end++
    const run = text.slice(start, end)
    let letters = 0
    for (const char of run) if (char >= "a" && char <= "z") letters++
    const symbols = run.length - letters
    if (letters >= 2 && symbols >= 1) {
      output += text.slice(cursor, start) + run.replace(/[0-9@$!|+]/g, (char) => LEET[char] ?? char)
      cursor = end
    }
    LEET_CONTACT.lastIndex = end
  }
  return cursor === 0 ? text : output + text.slice(cursor)
}

const isAsciiLetter = (char: string | undefined) => char !== undefined && char >= "a" && char <= "z"
const isGap = (char: string | undefined) => char === " " || char === "." || char === "-" || char === "_" || char === "*"

/**
 * Joins runs of at least four single letters separated by one blank or punctuation character ("i g n o r e",
 * "i.g.n.o.r.e"). Word breaks inside such a run are lost ("ignoreall"): the patterns allow for that. A single
 * left-to-right pass.
 */
export const joinSpacedLetters = (text: string): string => {
  let output = ""
  let index = 0
  while (index < text.length) {
    const single = isAsciiLetter(text[index]) && !isAsciiLetter(text[index - 1]) && !isAsciiLetter(text[index + 1])
    if (!single) {
      output += text[index]
      index++
      continue
    }
    let end = index
    let letters = text[index]!
    while (isGap(text[end + 1]) && isAsciiLetter(text[end + 2]) && !isAsciiLetter(text[end + 3])) {
      letters += text[end + 2]
      end += 2
    }
    output += letters.length >= 4 ? letters : text.slice(index, end + 1)
    index = end + 1
  }
  return output
}

/**
 * Words broken by a hyphen after or before one or two letters ("i-nstruction", "terminatio-n", "ou- tside"); it takes
 * two of them to be a disguise ("e-mail" alone is a word).
 */
const SPLIT_WORDS = /\b([a-z]{1,2})- ?([a-z]{2})|([a-z]{2})- ?([a-z]{1,2})\b/g
/** A leet symbol inside a word: between letters, or two of them around a few letters ("h4ck", "1gn0r3"). */
const LEET_WORD = /[a-z][0-9@$!|+][a-z]|[0-9@$!|+][a-z]{1,3}[0-9@$!|+]/
/** Any of the three disguises, in one pass: most texts have none and stop here. */
const DISGUISED =
  /[a-z][0-9@$!|+][a-z]|[0-9@$!|+][a-z]{1,3}[0-9@$!|+]|[a-z][ .\-_*][a-z][ .\-_*][a-z][ .\-_*][a-z]|\b[a-z]{1,2}- ?[a-z]{2}|[a-z]{2}- ?[a-z]{1,2}\b/

const SPACED_RUN = /(?:^|[^a-z])[a-z][ .\-_*][a-z][ .\-_*][a-z][ .\-_*][a-z](?![a-z])/

/**
 * The folded text with its disguises undone, or `undefined` when it has none (the common case, which then costs one
 * regular-expression test).
 */
export const deobfuscate = (folded: string): string | undefined => {
  if (!DISGUISED.test(folded)) return undefined
  const hasLeet = LEET_WORD.test(folded)
  const hasSpaced = SPACED_RUN.test(folded)
  const hasSplitWords = (folded.match(SPLIT_WORDS)?.length ?? 0) >= 2
  if (!hasLeet && !hasSpaced && !hasSplitWords) return undefined
  let text = hasLeet ? unleet(folded) : folded
  if (hasSpaced) text = joinSpacedLetters(text)
  if (hasSplitWords)
    text = text.replace(
      SPLIT_WORDS,
      (_, a?: string, b?: string, c?: string, d?: string) => (a ?? c ?? "") + (b ?? d ?? "")
    )
  return text === folded ? undefined : text
}
