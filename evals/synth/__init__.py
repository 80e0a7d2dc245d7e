"""Synthetic recordings for the labelled sets, made offline from what packages ship.

- `photos`: real photographs of people shipped inside installed packages (scikit-image's
  `astronaut` and `camera`, its LFW face subset, matplotlib's `grace_hopper`), cut into
  head-and-shoulders sprites with a soft edge.
- `scene`: a webcam picture frame by frame (numpy): a room, the candidate moving a little,
  and what happens to it (absent, a second person, a different person, looking away, a
  phone, a hand over the lens, a black lens, a frozen feed, lighting ramps and auto-exposure
  jumps, sensor noise).
- `sound`: the room's sound (numpy): several TTS engines and voices (espeak-ng, flite), two
  speakers, keyboard clicks, music, fan noise, mains hum, a tone.
- `webcam`: a scene and its sound encoded as MediaRecorder-like VP8/VP9/H.264 WebM (3 s
  clusters), test-length recordings by stream-copying short segments, and the chunking.
- `chromium`: chunks recorded by a real headless Chromium's MediaRecorder from a fake camera
  and microphone fed with a rendered scene.

Nothing is downloaded and nothing generated is committed: `evals.generate.materialise`
renders a recipe once into a cache keyed by its content.
"""
