import CoreML
import CoreVideo
import Foundation
import Vision

/// Which Core ML compute units to use (the on-screen switch).
enum ComputeChoice: String, CaseIterable, Identifiable {
    case all = "All"
    case cpuAndGPU = "CPU+GPU"
    case cpuAndNeuralEngine = "CPU+ANE"

    var id: String { rawValue }
    var units: MLComputeUnits {
        switch self {
        case .all: return .all
        case .cpuAndGPU: return .cpuAndGPU
        case .cpuAndNeuralEngine: return .cpuAndNeuralEngine
        }
    }
}

struct Prediction: Identifiable {
    let index: Int
    let label: String
    let probability: Double
    var id: Int { index }
}

/// Runs the bundle's model (compiled by Xcode from model.mlpackage to model.mlmodelc) through Vision.
///
/// Preprocessing follows manifest.json: the center square that survives "resize the shorter side to `resize`, crop
/// `crop`" is the region of interest, which Vision scales to the model's `crop` x `crop` image input; mean/std are
/// inside the model (`normalization_in_model`), so no per-pixel work happens here.
final class Classifier {
    let manifest: BundleManifest
    let labels: [String]
    private let request: VNCoreMLRequest

    init(manifest: BundleManifest, labels: [String], compute: ComputeChoice) throws {
        self.manifest = manifest
        self.labels = labels
        let name = (manifest.file as NSString).deletingPathExtension
        guard let url = Bundle.main.url(forResource: name, withExtension: "mlmodelc", subdirectory: "Bundle")
            ?? Bundle.main.url(forResource: name, withExtension: "mlmodelc") else {
            throw AppError.missing("\(name).mlmodelc: add Bundle/\(manifest.file) to the app target")
        }
        let config = MLModelConfiguration()
        config.computeUnits = compute.units
        let model = try VNCoreMLModel(for: MLModel(contentsOf: url, configuration: config))
        request = VNCoreMLRequest(model: model)
        request.imageCropAndScaleOption = .scaleFill  // the ROI below is already the manifest's center crop
    }

    /// The normalized center square kept by resize(shorter side) + center crop, for a w x h frame.
    func regionOfInterest(width: Int, height: Int) -> CGRect {
        let side = Double(min(width, height)) * Double(manifest.input.crop) / Double(manifest.input.resize)
        let w = side / Double(width), h = side / Double(height)
        return CGRect(x: (1 - w) / 2, y: (1 - h) / 2, width: w, height: h)
    }

    /// Classifies one camera frame; returns the top-k and the inference time in milliseconds.
    func classify(_ pixels: CVPixelBuffer, orientation: CGImagePropertyOrientation, topK: Int = 5)
        throws -> ([Prediction], Double) {
        request.regionOfInterest = regionOfInterest(width: CVPixelBufferGetWidth(pixels),
                                                    height: CVPixelBufferGetHeight(pixels))
        let handler = VNImageRequestHandler(cvPixelBuffer: pixels, orientation: orientation)
        let start = CACurrentMediaTime()
        try handler.perform([request])
        let ms = (CACurrentMediaTime() - start) * 1000
        let observations = request.results as? [VNCoreMLFeatureValueObservation] ?? []
        guard let obs = observations.first(where: { $0.featureName == manifest.output.name }) ?? observations.first,
              let array = obs.featureValue.multiArrayValue else { return ([], ms) }
        let scores = (0..<array.count).map { array[$0].doubleValue }
        let probs = manifest.output.kind == "probabilities" ? scores : softmax(scores)
        let top = probs.enumerated().sorted { $0.element > $1.element }.prefix(topK).map {
            Prediction(index: $0.offset, label: $0.offset < labels.count ? labels[$0.offset] : "class_\($0.offset)",
                       probability: $0.element)
        }
        return (Array(top), ms)
    }

    private func softmax(_ x: [Double]) -> [Double] {
        let m = x.max() ?? 0
        let e = x.map { exp($0 - m) }
        let s = e.reduce(0, +)
        return e.map { $0 / s }
    }
}
