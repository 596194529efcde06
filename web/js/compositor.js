// The composition shown on the page: the matted foreground over a colour, an image, a blurred copy of the input,
// or nothing (transparent; the page draws a checkerboard behind the canvas). fgr·α + background·(1 − α) is what
// the canvas's source-over blending computes for the foreground drawn with its alpha.

const BLUR_FRACTION = 0.02; // blur radius as a fraction of the frame's long side

export class Compositor {
  constructor(canvas) {
    this.canvas = canvas;
    this.context = canvas.getContext('2d');
    this.foreground = new OffscreenCanvas(1, 1);
    this.foregroundContext = this.foreground.getContext('2d');
    this.input = new OffscreenCanvas(1, 1); // the frame the model saw, for the blurred background
    this.inputContext = this.input.getContext('2d');
    this.mode = 'colour';
    this.colour = '#78ff9b'; // the published green (120, 255, 155)
    this.image = null; // an ImageBitmap
  }

  /** Keep a copy of the input frame (only needed under a blurred background). */
  keepInput(frame) {
    if (this.mode !== 'blur') return;
    resize(this.input, frame.width, frame.height);
    this.inputContext.drawImage(frame, 0, 0);
  }

  /** Draw one result: `rgba` holds fgr RGB and alpha, `width` × `height`. */
  draw(rgba, width, height) {
    resize(this.canvas, width, height);
    resize(this.foreground, width, height);
    this.foregroundContext.putImageData(new ImageData(new Uint8ClampedArray(rgba), width, height), 0, 0);
    const context = this.context;
    context.clearRect(0, 0, width, height);
    if (this.mode === 'colour') {
      context.fillStyle = this.colour;
      context.fillRect(0, 0, width, height);
    } else if (this.mode === 'image' && this.image) {
      drawCover(context, this.image, width, height);
    } else if (this.mode === 'blur') {
      context.filter = `blur(${Math.max(2, Math.round(BLUR_FRACTION * Math.max(width, height)))}px)`;
      context.drawImage(this.input, 0, 0, width, height);
      context.filter = 'none';
    }
    context.drawImage(this.foreground, 0, 0);
  }
}

function resize(canvas, width, height) {
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width;
    canvas.height = height;
  }
}

function drawCover(context, image, width, height) {
  // Scale the image to cover the frame (aspect kept) and centre-crop it, as inference.py does.
  const scale = Math.max(width / image.width, height / image.height);
  const sw = width / scale;
  const sh = height / scale;
  context.drawImage(image, (image.width - sw) / 2, (image.height - sh) / 2, sw, sh, 0, 0, width, height);
}
