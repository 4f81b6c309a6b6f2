import { relative } from "node:path";
import { BaseSequencer, type TestSpecification } from "vitest/node";

/**
 * Vitest's default order (failed first, then longest first from its cache,
 * or largest file first without one) with the files named in `first` moved to
 * the front of their project, in that order. In a fresh checkout (CI) there is
 * no cache, and the longest file (bench-smoke: ~90 s) is a small one that
 * would otherwise start last and run alone at the end of the parallel group.
 */
export function longFirst(first: string[]) {
  return class LongFirstSequencer extends BaseSequencer {
    override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
      const base = await super.sort(files);
      const index = new Map(base.map((f, i) => [f, i]));
      const rank = (f: TestSpecification) => {
        const i = first.indexOf(relative(this.ctx.config.root, f.moduleId));
        return i === -1 ? first.length : i;
      };
      return [...base].sort(
        (a, b) =>
          a.project.config.sequence.groupOrder - b.project.config.sequence.groupOrder ||
          (a.project.name < b.project.name ? -1 : a.project.name > b.project.name ? 1 : 0) ||
          rank(a) - rank(b) ||
          index.get(a)! - index.get(b)!,
      );
    }
  };
}
