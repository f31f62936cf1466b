// The web client's coverage from the browser tests: merges the V8 coverage every page wrote (tests/browser with
// PLAIT_WEB_COVERAGE=<dir>), maps it through web/dist's source maps to web/src and prints a per-file table.
//
//   node web/scripts/coverage-report.mjs <dir> [--fail-under-lines N]
//
// Exit 1 when the lines covered fall under N %, or when <dir> holds no coverage while CI=true (locally the
// browser tests skip without chromium; then there is nothing to report).
//
// The numbers are V8's block counts, as c8 reports them: branches and functions are exact; % Lines counts every
// source line (comments and types too) as covered unless code that did not run spans it, so it reads higher
// than an instrumenting tool's.
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { mergeProcessCovs } from '@bcoe/v8-coverage'
import libCoverage from 'istanbul-lib-coverage'
import libReport from 'istanbul-lib-report'
import reports from 'istanbul-reports'
import v8toIstanbul from 'v8-to-istanbul'

const WEB = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const SRC = path.join(WEB, 'src') + path.sep
const ASSETS = path.join(WEB, 'dist', 'assets')

const args = process.argv.slice(2)
const flag = args.indexOf('--fail-under-lines')
const failUnder = flag >= 0 ? Number(args.splice(flag, 2)[1]) : null
if (args.length !== 1 || Number.isNaN(failUnder)) {
  console.error('usage: coverage-report.mjs <dir> [--fail-under-lines N]')
  process.exit(2)
}
const dir = path.resolve(args[0])
const files = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.json')) : []
if (files.length === 0) {
  console.log(`web client coverage: nothing in ${dir} (did the browser tests run?)`)
  process.exit(process.env.CI === 'true' ? 1 : 0)
}

// One V8 process coverage per file (what one document of one page ran); a script is named by its file in
// dist/assets, whatever port served it, so merging adds up the counts of the same bundle.
const pages = files.map((f) => {
  const { result } = JSON.parse(readFileSync(path.join(dir, f), 'utf8'))
  for (const script of result) {
    script.url = pathToFileURL(path.join(ASSETS, path.basename(new URL(script.url).pathname))).href
  }
  return { result }
})
const merged = mergeProcessCovs(pages)

const map = libCoverage.createCoverageMap({})
for (const script of merged.result) {
  const file = fileURLToPath(script.url)
  if (!existsSync(file) || !existsSync(`${file}.map`)) {
    console.error(`web client coverage: ${file} or its source map is missing (rebuilt since the tests ran?)`)
    process.exit(1)
  }
  const source = readFileSync(file, 'utf8')
  const sourcemap = JSON.parse(readFileSync(`${file}.map`, 'utf8'))
  const sources = { source, sourceMap: { sourcemap } }
  // Only web/src; v8-to-istanbul passes this both the map's relative source paths and resolved ones.
  const converter = v8toIstanbul(file, 0, sources, (p) => !path.resolve(ASSETS, p).startsWith(SRC))
  await converter.load()
  converter.applyCoverage(script.functions)
  map.merge(converter.toIstanbul())
}

const context = libReport.createContext({ dir: path.join(dir, 'report'), coverageMap: map, defaultSummarizer: 'flat' })
const pageCount = new Set(files.map((f) => f.replace(/-\d+\.json$/, ''))).size
console.log(`\nweb client coverage (web/src, from ${pageCount} browser pages, ${files.length} V8 coverage files):`)
reports.create('text', { skipFull: false, maxCols: 0 }).execute(context)

// A source no loaded script came from is in no row above: name it rather than let it leave the total.
const measured = new Set(map.files())
const unseen = readdirSync(SRC, { recursive: true })
  .filter((f) => /\.tsx?$/.test(f) && !/\.(test|d)\.ts$/.test(f))
  .map((f) => path.join(SRC, f))
  .filter((f) => !measured.has(f))
if (unseen.length) console.log(`not in any script the pages loaded (types only, or never loaded): ${unseen.join(', ')}`)

const lines = map.getCoverageSummary().lines.pct
if (failUnder !== null && lines < failUnder) {
  console.error(`web client coverage: lines ${lines} % is under the gate of ${failUnder} %`)
  process.exit(1)
}
console.log(`web client coverage: lines ${lines} %${failUnder === null ? '' : ` (gate ${failUnder} %)`}`)
