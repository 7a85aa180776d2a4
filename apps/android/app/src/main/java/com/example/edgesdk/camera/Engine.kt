package com.example.edgesdk.camera

import android.content.Context
import android.graphics.Bitmap

/** One inference runtime behind the same call: a cropped frame in, float logits out. */
interface Engine : AutoCloseable {
    /** What it actually runs on (e.g. "LiteRT GPU", "LiteRT XNNPACK x4", "ExecuTorch XNNPACK"). */
    val description: String

    fun run(crop: Bitmap): FloatArray

    companion object {
        /** The engines this bundle can use, in the order the picker shows them. */
        fun choicesFor(manifest: BundleManifest): List<String> = when (manifest.target) {
            "tflite" -> listOf(LiteRtEngine.GPU, LiteRtEngine.CPU)
            else -> listOf(ExecuTorchEngine.NAME)
        }

        fun create(context: Context, manifest: BundleManifest, choice: String, threads: Int): Engine =
            if (choice == ExecuTorchEngine.NAME) ExecuTorchEngine(context, manifest)
            else LiteRtEngine(context, manifest, useGpu = choice == LiteRtEngine.GPU, threads = threads)
    }
}

/** Output dequantization and softmax, as edge_sdk's Predictor does. */
object Scores {
    fun probabilities(logits: FloatArray, kind: String): FloatArray {
        if (kind == "probabilities") return logits
        val max = logits.maxOrNull() ?: 0f
        val e = logits.map { kotlin.math.exp((it - max).toDouble()) }
        val sum = e.sum()
        return FloatArray(logits.size) { (e[it] / sum).toFloat() }
    }

    fun topK(probs: FloatArray, labels: List<String>, k: Int = 5): List<Pair<String, Float>> =
        probs.indices.sortedByDescending { probs[it] }.take(k).map { (labels.getOrNull(it) ?: "class_$it") to probs[it] }
}
