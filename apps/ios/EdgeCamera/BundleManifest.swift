import Foundation

/// The parts of an edge-sdk bundle's manifest.json this app reads (schema_version 1).
/// Keys are snake_case in the JSON; the decoder maps them (`normalization_in_model` -> `normalizationInModel`).
/// Every non-optional field here is checked against real Core ML bundles by tests/test_apps_native.py.
struct BundleManifest: Decodable {
    struct Model: Decodable {
        let name: String
        let numClasses: Int?
    }

    struct Input: Decodable {
        let name: String
        let resize: Int
        let crop: Int
        let layout: String
        let normalizationInModel: Bool
        let coremlType: String?
    }

    struct Output: Decodable {
        let name: String
        let kind: String
        let shape: [Int]
    }

    let schemaVersion: Int
    let model: Model
    let target: String
    let backend: String
    let precision: String
    let file: String
    let sha256: String
    let input: Input
    let output: Output
    let labels: String?

    /// Reads Bundle/manifest.json from the app's resources.
    static func load(from bundle: Bundle = .main) throws -> BundleManifest {
        guard let url = bundle.url(forResource: "manifest", withExtension: "json", subdirectory: "Bundle")
            ?? bundle.url(forResource: "manifest", withExtension: "json") else {
            throw AppError.missing("manifest.json (run `edge-sdk app ios BUNDLE -o DIR`)")
        }
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        let manifest = try decoder.decode(BundleManifest.self, from: Data(contentsOf: url))
        guard manifest.schemaVersion == 1 else { throw AppError.unsupported("schema_version \(manifest.schemaVersion)") }
        guard manifest.target == "coreml" else {
            throw AppError.unsupported("a \(manifest.target) bundle; make one with `edge-sdk convert MODEL --target coreml`")
        }
        return manifest
    }

    /// labels.txt, one class per line (index = class id).
    func loadLabels(from bundle: Bundle = .main) -> [String] {
        guard let name = labels,
              let url = bundle.url(forResource: (name as NSString).deletingPathExtension, withExtension: "txt",
                                   subdirectory: "Bundle") ?? bundle.url(forResource: "labels", withExtension: "txt"),
              let text = try? String(contentsOf: url, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").map(String.init).filter { !$0.isEmpty }
    }
}

enum AppError: LocalizedError {
    case missing(String)
    case unsupported(String)

    var errorDescription: String? {
        switch self {
        case .missing(let what): return "missing \(what)"
        case .unsupported(let what): return "this app runs Core ML bundles, not \(what)"
        }
    }
}
