import SwiftUI

/// The screen: camera preview, overlay, and the controls (compute units, stop/start).
struct ContentView: View {
    @StateObject private var camera = CameraController(budgetMs: AppConfig.budgetMs)
    @State private var compute: ComputeChoice = .all

    var body: some View {
        ZStack {
            CameraPreview(session: camera.session).ignoresSafeArea()
            OverlayView(camera: camera)
            VStack {
                Spacer()
                HStack {
                    Picker("Compute units", selection: $compute) {
                        ForEach(ComputeChoice.allCases) { Text($0.rawValue).tag($0) }
                    }
                    .pickerStyle(.segmented)
                    Button(camera.running ? "Stop" : "Start") {
                        camera.running ? camera.stop() : camera.start(compute: compute)
                    }
                    .buttonStyle(.borderedProminent)
                }
                .padding(.horizontal, 10)
                .padding(.bottom, 100)
            }
        }
        .onAppear { camera.start(compute: compute) }
        .onChange(of: compute) { newValue in camera.start(compute: newValue) }
        .overlay(alignment: .top) {
            Text(camera.status).font(.caption).foregroundColor(.yellow).padding(.top, 2)
        }
    }
}

/// Settings that are not in the bundle.
enum AppConfig {
    /// The per-frame latency budget judged on p90, as `edge-sdk bench --budget-ms` does.
    static let budgetMs: Double = 50
}
