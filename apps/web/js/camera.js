// Camera: getUserMedia with the rear camera preferred on phones, a list of cameras for the picker, stop/start.

/** Open a camera: a chosen deviceId, else the rear ('environment') one when there is one. */
export async function openCamera(video, deviceId) {
  if (!navigator.mediaDevices?.getUserMedia) {
    throw new Error(window.isSecureContext
      ? 'this browser has no camera API (getUserMedia)'
      : 'the camera needs a secure context: open the https:// URL (edge-sdk serve --https) or http://localhost');
  }
  const video_ = deviceId
    ? { deviceId: { exact: deviceId }, width: { ideal: 640 }, height: { ideal: 480 } }
    : { facingMode: { ideal: 'environment' }, width: { ideal: 640 }, height: { ideal: 480 } };
  const stream = await navigator.mediaDevices.getUserMedia({ video: video_, audio: false });
  video.srcObject = stream;
  video.muted = true;
  video.playsInline = true;
  await video.play();
  const track = stream.getVideoTracks()[0];
  return { stream, label: track?.label || 'camera', deviceId: track?.getSettings().deviceId || deviceId || null };
}

export function stopCamera(video) {
  const s = video.srcObject;
  if (s) for (const t of s.getTracks()) t.stop();
  video.srcObject = null;
}

/** Video inputs, labelled once permission was granted. */
export async function listCameras() {
  if (!navigator.mediaDevices?.enumerateDevices) return [];
  const all = await navigator.mediaDevices.enumerateDevices();
  return all.filter((d) => d.kind === 'videoinput').map((d, i) => ({ id: d.deviceId, label: d.label || `camera ${i + 1}` }));
}
