// Validates AsyncAPI documents with the official parser; prints one JSON line per file:
// {"file": ..., "errors": [...], "warnings": n}. Exit code 0 even with errors: the test judges.
const fs = require("fs");
const { Parser } = require("@asyncapi/parser");

(async () => {
  const parser = new Parser();
  for (const file of process.argv.slice(2)) {
    const { document, diagnostics } = await parser.parse(fs.readFileSync(file, "utf8"));
    const errors = diagnostics.filter((d) => d.severity === 0).map((d) => `${d.path.join(".")}: ${d.message}`);
    console.log(JSON.stringify({ file, errors, warnings: diagnostics.length - errors.length,
                                 channels: document ? document.channels().length : 0 }));
  }
})();
