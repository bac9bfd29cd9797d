import Foundation
import SubspaceCore
import SubspaceModels

/// The files of a Perfusion edit: `edit.safetensors` (i*, C⁻¹ i* and o* under
/// `<slot>.edit.key`, `.edit.metric_key`, `.edit.output`) and `edit.json` (the word, the
/// slot, the settings, the source checkpoint and the figures). W stays in the source
/// checkpoint. Both are written atomically.
public enum PerfusionEditFiles {
    public static let tensorsFile = "edit.safetensors"
    public static let recordFile = "edit.json"

    /// What `edit.json` holds.
    public struct Record: Codable, Equatable, Sendable {
        public var word: String
        public var slot: String
        public var checkpoint: String
        public var settings: PerfusionSettings
        /// E = i*ᵀ C⁻¹ i*.
        public var energy: Float
        public var figures: PerfusionFigures
        public var fitLosses: [Float]

        public init(word: String, slot: String, checkpoint: String, settings: PerfusionSettings, energy: Float, figures: PerfusionFigures, fitLosses: [Float]) {
            self.word = word; self.slot = slot; self.checkpoint = checkpoint; self.settings = settings
            self.energy = energy; self.figures = figures; self.fitLosses = fitLosses
        }
    }

    /// Checks, before any work, that `dir` may receive an edit: it must not exist, unless
    /// `overwrite` and it holds nothing but an edit's files.
    /// - Throws: `ConfigurationError` saying why not.
    public static func checkDestination(_ dir: URL, overwrite: Bool) throws {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: dir.path, isDirectory: &isDirectory) else { return }
        guard overwrite else { throw ConfigurationError("'\(dir.path)' exists; pass --overwrite to replace the edit it holds") }
        guard isDirectory.boolValue else { throw ConfigurationError("refusing to overwrite '\(dir.path)': it is a file, not an edit folder") }
        let others = try fm.contentsOfDirectory(atPath: dir.path).filter { ![tensorsFile, recordFile].contains($0) }
        guard others.isEmpty else {
            throw ConfigurationError("refusing to overwrite '\(dir.path)': it holds \(others.sorted().prefix(3).joined(separator: ", ")), not only an edit's files")
        }
    }

    /// `source` with the edit saved in `dir` applied (for `eval --edit`, `sample --edit`).
    /// - Throws: `ConfigurationError` when the files are missing, unreadable or do not fit
    ///   the model (unknown slot, wrong shapes).
    public static func load(from dir: URL, onto source: LlamaModel) throws -> LlamaModel {
        let recordURL = dir.appendingPathComponent(recordFile), tensorsURL = dir.appendingPathComponent(tensorsFile)
        guard let data = FileManager.default.contents(atPath: recordURL.path) else { throw ConfigurationError("cannot read '\(recordURL.path)'") }
        let record: Record
        do { record = try JSONDecoder().decode(Record.self, from: data) } catch {
            throw ConfigurationError("'\(recordURL.path)' is not a Perfusion edit record")
        }
        let file = try SafeTensorsFile.load(url: tensorsURL)
        func vector(_ name: String) throws -> [Float] { try file.tensor(record.slot + ".edit." + name).array }
        let kind = RankOneEditLinear.Kind(
            key: try vector("key"), metricKey: try vector("metric_key"), output: try vector("output"),
            beta: record.settings.beta, tau: record.settings.tau)
        return try PerfusionEdit.model(source: source, slot: record.slot, kind: kind).0
    }

    /// Writes the edit's tensors and its record into `dir` (created if needed).
    public static func write(_ edit: PerfusionEdit, record: Record, to dir: URL) throws {
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try SafeTensorsFile.write(
            edit.tensors, metadata: ["format": "pt", "subspace": "perfusion-edit", "slot": edit.path],
            to: dir.appendingPathComponent(tensorsFile))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try encoder.encode(record), to: dir.appendingPathComponent(recordFile))
    }
}
