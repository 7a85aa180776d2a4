package com.example.edgesdk.camera

import android.content.Context
import kotlinx.serialization.SerialName
import kotlinx.serialization.Serializable
import kotlinx.serialization.json.Json
import java.security.MessageDigest

/**
 * The parts of an edge-sdk bundle's manifest.json this app reads (schema_version 1), from assets/bundle/.
 * Nullable fields may be null or absent; every other field is checked against real .tflite and .pte bundles by
 * tests/test_apps_native.py.
 */
@Serializable
data class BundleManifest(
    @SerialName("schema_version") val schemaVersion: Int,
    val model: ModelInfo,
    val target: String,
    val backend: String,
    val precision: String,
    val file: String,
    val sha256: String,
    val input: InputSpec,
    val output: OutputSpec,
    val labels: String? = null,
) {
    companion object {
        const val DIR = "bundle"
        private val json = Json { ignoreUnknownKeys = true }

        fun load(context: Context): BundleManifest {
            val text = context.assets.open("$DIR/manifest.json").bufferedReader().use { it.readText() }
            val m = json.decodeFromString(serializer(), text)
            require(m.schemaVersion == 1) { "unsupported manifest schema_version ${m.schemaVersion}" }
            require(m.target == "tflite" || m.target == "executorch") {
                "a ${m.target} bundle; make one with `edge-sdk convert MODEL --target tflite --nhwc`"
            }
            return m
        }
    }

    fun labels(context: Context): List<String> =
        labels?.let { name -> context.assets.open("$DIR/$name").bufferedReader().use { r -> r.readLines() } }
            ?.filter { it.isNotBlank() } ?: emptyList()

    /** The model file's bytes, refused when they do not match the manifest's sha256. */
    fun modelBytes(context: Context): ByteArray {
        val bytes = context.assets.open("$DIR/$file").use { it.readBytes() }
        val digest = MessageDigest.getInstance("SHA-256").digest(bytes).joinToString("") { "%02x".format(it) }
        check(digest == sha256) { "sha256 mismatch for $file: the bundle was modified" }
        return bytes
    }
}

@Serializable
data class ModelInfo(val name: String, @SerialName("num_classes") val numClasses: Int? = null)

@Serializable
data class Quantization(val scale: Float, @SerialName("zero_point") val zeroPoint: Int)

@Serializable
data class InputSpec(
    val shape: List<Int>,
    val layout: String,
    val dtype: String,
    val resize: Int,
    val crop: Int,
    val mean: List<Float>,
    val std: List<Float>,
    @SerialName("normalization_in_model") val normalizationInModel: Boolean,
    val quantization: Quantization? = null,
)

@Serializable
data class OutputSpec(
    val shape: List<Int>,
    val kind: String,
    val dtype: String,
    val quantization: Quantization? = null,
)
