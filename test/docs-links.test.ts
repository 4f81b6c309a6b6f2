import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

// Every relative link in README.md and docs/ points at a file that exists
// and, with a #fragment, at a heading of that file (GitHub's anchors).

const root = fileURLToPath(new URL("..", import.meta.url));
const files = ["README.md", ...readdirSync(join(root, "docs")).map((f) => join("docs", f))].filter(
  (f) => f.endsWith(".md"),
);

/** Markdown outside code fences. */
function prose(text: string): string {
  return text.replace(/^```[\s\S]*?^```/gm, "");
}

function anchors(file: string): Set<string> {
  const out = new Set<string>();
  for (const m of prose(readFileSync(file, "utf8")).matchAll(/^#{1,6} (.+)$/gm)) {
    const slug = m[1]!
      .replace(/`/g, "")
      .toLowerCase()
      .replace(/[^\p{L}\p{N} _-]/gu, "")
      .replace(/ /g, "-");
    let unique = slug;
    for (let n = 1; out.has(unique); n++) unique = `${slug}-${n}`;
    out.add(unique);
  }
  return out;
}

describe("links in README.md and docs/", () => {
  it("reach an existing file and heading", () => {
    const broken: string[] = [];
    for (const file of files) {
      const path = join(root, file);
      for (const m of prose(readFileSync(path, "utf8")).matchAll(/\]\(([^)\s]+)\)/g)) {
        const target = m[1]!;
        if (/^[a-z]+:/.test(target)) continue;
        const [pathPart, fragment] = target.split("#") as [string, string | undefined];
        const to = pathPart === "" ? path : join(dirname(path), pathPart);
        if (!existsSync(to)) broken.push(`${file}: ${target} (no such file)`);
        else if (fragment !== undefined && to.endsWith(".md") && !anchors(to).has(fragment))
          broken.push(`${file}: ${target} (no heading #${fragment} in ${relative(root, to)})`);
      }
    }
    expect(files.length).toBeGreaterThan(5);
    expect(broken).toEqual([]);
  });
});
