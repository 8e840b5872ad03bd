// Summarizes the mocha JSON reports written by run.sh.
//
//   node summarize.mjs KNOWN_FAILURES_TSV RESULTS_DIR CONFIG...
//
// RESULTS_DIR holds CONFIG.RUN.json files (mocha's json reporter). For each
// configuration it prints the pass/fail counts of every run and each test
// that failed at least once, with its assertion message and whether the
// failure is known (known-failures.tsv) or UNEXPECTED. It also reports a
// known "fails" entry that passed in every run (fixed upstream?). The exit
// status is 1 when there was an unexpected failure or a run produced no
// report, 0 otherwise.
import fs from "node:fs";
import path from "node:path";

const [knownFile, dir, ...configs] = process.argv.slice(2);

// known-failures.tsv: config-glob <TAB> fails|flaky <TAB> full title <TAB> reason
const known = fs
  .readFileSync(knownFile, "utf8")
  .split("\n")
  .filter((l) => l.trim() && !l.startsWith("#"))
  .map((l) => {
    const [glob, kind, title, reason] = l.split("\t");
    const re = new RegExp("^" + glob.split("*").map((p) => p.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*") + "$");
    return { glob, re, kind, title, reason };
  });
const lookup = (cfg, title) => known.find((k) => k.re.test(cfg) && k.title === title);

// The first line of an assertion message, without mocha's advice on timeouts.
const oneLine = (s) =>
  String(s ?? "")
    .split("\n")[0]
    .replace(/\. For async tests and hooks.*$/, "")
    .slice(0, 200);
const explained = new Set(); // reasons printed already
let bad = false;
const table = [];

for (const cfg of configs) {
  const files = fs
    .readdirSync(dir)
    .filter((f) => f.startsWith(cfg + ".") && f.endsWith(".json") && /^\d+$/.test(f.slice(cfg.length + 1, -5)))
    .sort((a, b) => Number(a.slice(cfg.length + 1, -5)) - Number(b.slice(cfg.length + 1, -5)));
  console.log(`\n== ${cfg}`);
  if (files.length === 0) {
    console.log("   no report: the run did not complete");
    bad = true;
    continue;
  }
  const fails = new Map(); // full title → { n, msgs: Set }
  let total = 0;
  const counts = [];
  for (const f of files) {
    let r;
    try {
      r = JSON.parse(fs.readFileSync(path.join(dir, f), "utf8"));
    } catch (e) {
      console.log(`   ${f}: unreadable report (${e.message})`);
      bad = true;
      continue;
    }
    total = Math.max(total, r.stats.tests);
    counts.push(`${r.stats.passes}/${r.stats.tests}`);
    for (const t of r.failures) {
      const e = fails.get(t.fullTitle) ?? { n: 0, msgs: new Set() };
      e.n++;
      e.msgs.add(oneLine(t.err?.message));
      fails.set(t.fullTitle, e);
    }
  }
  const runs = counts.length;
  console.log(`   passed per run: ${counts.join(", ")}`);
  let unexpected = 0;
  for (const [title, e] of [...fails].sort((a, b) => b[1].n - a[1].n)) {
    const k = lookup(cfg, title);
    const tag = k ? `known ${k.kind}` : "UNEXPECTED";
    if (!k) unexpected++;
    console.log(`   FAIL ${e.n}/${runs} [${tag}] ${title}`);
    for (const m of e.msgs) console.log(`        ${m}`);
    if (k && !explained.has(k.reason)) {
      explained.add(k.reason);
      console.log(`        why: ${k.reason}`);
    }
  }
  for (const k of known) {
    if (k.kind === "fails" && k.re.test(cfg) && !fails.has(k.title)) {
      console.log(`   NOTE: known failure passed in every run (fixed upstream?): ${k.title}`);
    }
  }
  if (unexpected) bad = true;
  table.push({ cfg, runs, total, counts, fails, unexpected });
}

console.log("\n== summary");
for (const t of table) {
  const always = [...t.fails].filter(([, e]) => e.n === t.runs).length;
  const some = t.fails.size - always;
  console.log(
    `   ${t.cfg.padEnd(14)} ${t.total} tests, ${t.runs} run(s): ` +
      `${t.fails.size === 0 ? "all passed" : `${always} failed every run, ${some} failed sometimes`}` +
      (t.unexpected ? `, ${t.unexpected} UNEXPECTED` : ""),
  );
}
process.exit(bad ? 1 : 0);
