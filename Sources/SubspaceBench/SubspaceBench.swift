// SubspaceBench: The method-comparison suite: cells, plans, the runner that executes each cell as its own process, results, reports and figures.
//
// May depend on: every mainline layer; used by the command-line tool and tests only. Nothing here may import a layer listed after it in Package.swift.
