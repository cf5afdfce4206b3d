import { runChaos } from "./chaos.ts";

const [voters, from, to] = process.argv.slice(2).map(Number);
let fails = 0;
for (let s = from!; s <= to!; s++) {
  try {
    runChaos(s, { voters });
  } catch (e) {
    fails++;
    console.log(
      s,
      String((e as Error).message)
        .split("\n")
        .slice(0, 2)
        .join(" | "),
    );
  }
}
console.log("voters", voters, "fails", fails);
