import SwiftUI

/// Entry point: one screen, the camera with the classifier overlay.
@main
struct EdgeCameraApp: App {
    var body: some Scene {
        WindowGroup {
            ContentView()
        }
    }
}
