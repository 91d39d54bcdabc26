#include "data/synthetic_video.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <numbers>

#include "core/error.h"

namespace iris {
namespace {

namespace fs = std::filesystem;
constexpr double kPi = std::numbers::pi;

// SplitMix64: a fixed generator keeps clips identical across standard libraries.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  double uniform(double lo = 0.0, double hi = 1.0) {
    return lo + (hi - lo) * static_cast<double>(next() >> 11) * 0x1.0p-53;
  }

 private:
  uint64_t state_;
};

// A domain's appearance. Geometry, motion and labels come from the seed alone, so both domains
// show the same scenes; domain A's values are the generator's original ones.
using Rgb = std::array<double, 3>;
struct Style {
  Rgb tissue, tissue_texture, anatomy_a, anatomy_a_texture, anatomy_b, anatomy_b_texture;
  double texture_scale;      // spatial frequency of the tissue texture
  std::array<Rgb, 3> shaft;  // per instrument type
  Rgb wrist, jaws;
  double glint;    // specular streak strength on instruments
  double blur;     // half the exposure, in frames
  double falloff;  // light lost towards the rim of the field
  bool tinted;     // the light's colour multiplies the image
  Rgb light;
  double noise;  // sensor noise amplitude (grey levels)
};

const Style& domain_style(SyntheticDomain d) {
  static const Style a{.tissue = {185, 92, 82},
                       .tissue_texture = {35, 22, 20},
                       .anatomy_a = {125, 42, 38},
                       .anatomy_a_texture = {25, 10, 8},
                       .anatomy_b = {150, 158, 88},
                       .anatomy_b_texture = {20, 22, 12},
                       .texture_scale = 1.0,
                       .shaft = {{{42, 42, 48}, {95, 95, 101}, {62, 62, 68}}},
                       .wrist = {118, 118, 124},
                       .jaws = {178, 178, 184},
                       .glint = 0.85,
                       .blur = 0.3,
                       .falloff = 0.45,
                       .tinted = false,
                       .light = {1, 1, 1},
                       .noise = 4.0};
  // Another hospital's tower: cool light, finer and paler tissue, polished instruments with
  // dark joints and brass jaws, a longer exposure and a noisier sensor.
  static const Style b{.tissue = {222, 160, 150},
                       .tissue_texture = {28, 30, 30},
                       .anatomy_a = {150, 70, 92},
                       .anatomy_a_texture = {30, 18, 22},
                       .anatomy_b = {200, 186, 120},
                       .anatomy_b_texture = {26, 22, 14},
                       .texture_scale = 2.6,
                       .shaft = {{{196, 200, 206}, {160, 168, 176}, {214, 214, 220}}},
                       .wrist = {52, 52, 60},
                       .jaws = {196, 150, 70},
                       .glint = 0.5,
                       .blur = 0.6,
                       .falloff = 0.2,
                       .tinted = true,
                       .light = {0.78, 1.0, 1.08},
                       .noise = 10.0};
  return d == SyntheticDomain::kB ? b : a;
}

at::Tensor rgb(double r, double g, double b);
at::Tensor rgb(const Rgb& c) {
  return rgb(c[0], c[1], c[2]);
}

uint64_t mix(uint64_t a, uint64_t b) {
  return Rng(a * 0x100000001B3ULL ^ (b + 0x51ED27ULL)).next();
}

struct Wave {
  double fx, fy, phase, amplitude;
};

struct Blob {
  double cx, cy, radius, p2, p3, a2, a3;
};

struct Instrument {
  int64_t type;
  double entry_angle, radius, swing, swing_speed, swing_phase, slide, slide_speed;
  double width, depth, depth_speed, depth_phase, jaw_open, jaw_speed;
  double t_in, t_out, ramp;  // field entry/exit schedule in frames
};

struct Spot {
  double x, y, radius, phase;
};

// Everything about one video that does not change from frame to frame.
struct Scene {
  std::vector<Wave> waves;
  Blob a, b;
  std::vector<Instrument> instruments;
  std::vector<Spot> spots;
  double drift_x, drift_y, drift_speed;
};

Scene make_scene(const SyntheticVideoOptions& o, int64_t video) {
  Rng rng(mix(o.seed, static_cast<uint64_t>(video)));
  const double w = static_cast<double>(o.width);
  const double h = static_cast<double>(o.height);
  const double m = std::min(w, h);
  Scene s;
  for (int k = 0; k < 10; ++k) {
    const double f = (2 * kPi / m) * rng.uniform(1.0, 12.0);
    const double angle = rng.uniform(0, 2 * kPi);
    s.waves.push_back({f * std::cos(angle), f * std::sin(angle), rng.uniform(0, 2 * kPi),
                       rng.uniform(0.3, 1.0) / (1.0 + 0.15 * k)});
  }
  s.a = {w * rng.uniform(0.25, 0.45), h * rng.uniform(0.3, 0.6), m * rng.uniform(0.22, 0.32),
         rng.uniform(0, 2 * kPi),     rng.uniform(0, 2 * kPi),   rng.uniform(0.05, 0.2),
         rng.uniform(0.03, 0.12)};
  s.b = {w * rng.uniform(0.55, 0.75), h * rng.uniform(0.35, 0.65), m * rng.uniform(0.12, 0.2),
         rng.uniform(0, 2 * kPi),     rng.uniform(0, 2 * kPi),     rng.uniform(0.05, 0.2),
         rng.uniform(0.03, 0.12)};
  const auto frames = static_cast<double>(std::max<int64_t>(o.frames, 1));
  const int64_t n = std::clamp<int64_t>(o.instruments, 1, 4);
  for (int64_t i = 0; i < n; ++i) {
    Instrument ins;
    ins.type = static_cast<int64_t>(rng.next() % 3);
    // Spread the entry points around the field so instruments cross and occlude each other.
    ins.entry_angle =
        2 * kPi * (static_cast<double>(i) / static_cast<double>(n)) + rng.uniform(-0.5, 0.5) + 0.6;
    ins.radius = 0.5 * std::hypot(w, h) + 0.05 * m;
    ins.swing = rng.uniform(0.15, 0.35);
    ins.swing_speed = rng.uniform(0.2, 0.45);
    ins.swing_phase = rng.uniform(0, 2 * kPi);
    ins.slide = rng.uniform(0.03, 0.08) * w;
    ins.slide_speed = rng.uniform(0.15, 0.35);
    ins.width = m * rng.uniform(0.07, 0.095);
    ins.depth = ins.radius * rng.uniform(0.75, 1.0);
    ins.depth_speed = rng.uniform(0.15, 0.35);
    ins.depth_phase = rng.uniform(0, 2 * kPi);
    ins.jaw_open = rng.uniform(0.3, 0.7);
    ins.jaw_speed = rng.uniform(0.15, 0.4);
    // The second instrument enters during the clip, the third leaves; the others stay.
    ins.t_in = i == 1 ? 0.3 * frames : -1e9;
    ins.t_out = i == 2 ? 0.7 * frames : 1e9;
    ins.ramp = std::max(1.0, 0.2 * frames);
    s.instruments.push_back(ins);
  }
  const int spots = 6 + static_cast<int>(rng.next() % 6);
  for (int k = 0; k < spots; ++k) {
    s.spots.push_back({w * rng.uniform(0.1, 0.9), h * rng.uniform(0.1, 0.9),
                       m * rng.uniform(0.006, 0.015), rng.uniform(0, 2 * kPi)});
  }
  s.drift_x = m * rng.uniform(0.01, 0.03);
  s.drift_y = m * rng.uniform(0.01, 0.03);
  s.drift_speed = rng.uniform(0.1, 0.25);
  return s;
}

at::Tensor blob_mask(const Blob& b, const at::Tensor& x, const at::Tensor& y) {
  const auto dx = x - b.cx;
  const auto dy = y - b.cy;
  const auto theta = at::atan2(dy, dx);
  const auto r =
      b.radius * (1 + b.a2 * at::sin(2 * theta + b.p2) + b.a3 * at::sin(3 * theta + b.p3));
  return (dx * dx + dy * dy).sqrt() < r;
}

struct InstrumentPose {
  bool present = false;
  at::Tensor part;   // [H, W] uint8: 0 none, kPartShaft, kPartWrist, kPartJaws
  at::Tensor shade;  // [H, W] float brightness factor
  at::Tensor glint;  // [H, W] float specular streak 0..1
};

InstrumentPose pose_instrument(const Instrument& ins, double t, double cx, double cy,
                               const at::Tensor& x, const at::Tensor& y) {
  InstrumentPose p;
  double presence = std::clamp((t - ins.t_in) / ins.ramp, 0.0, 1.0) *
                    std::clamp((ins.t_out - t) / ins.ramp, 0.0, 1.0);
  const double depth = ins.depth * (0.85 + 0.15 * std::sin(ins.depth_speed * t + ins.depth_phase));
  const double length = depth * presence;
  const double ex = cx + ins.radius * std::cos(ins.entry_angle) -
                    ins.slide * std::sin(ins.slide_speed * t) * std::sin(ins.entry_angle);
  const double ey = cy + ins.radius * std::sin(ins.entry_angle) +
                    ins.slide * std::sin(ins.slide_speed * t) * std::cos(ins.entry_angle);
  const double theta =
      ins.entry_angle + kPi + ins.swing * std::sin(ins.swing_speed * t + ins.swing_phase);
  const double ux = std::cos(theta);
  const double uy = std::sin(theta);
  const double w = ins.width;
  const double jaw = 2.0 * w;
  const double wrist = 0.9 * w;
  const auto px = x - ex;
  const auto py = y - ey;
  const auto s = px * ux + py * uy;
  const auto d = py * ux - px * uy;
  auto part = at::zeros(x.sizes(), at::kByte);
  const auto shaft = (s <= length - jaw - wrist) & (d.abs() <= w / 2);
  const auto wrist_m = (s > length - jaw - wrist) & (s <= length - jaw) & (d.abs() <= 0.42 * w);
  part.masked_fill_(shaft, kPartShaft);
  part.masked_fill_(wrist_m, kPartWrist);
  const double open = ins.jaw_open * (0.25 + 0.75 * (0.5 + 0.5 * std::sin(ins.jaw_speed * t)));
  const double jx = ex + (length - jaw) * ux;
  const double jy = ey + (length - jaw) * uy;
  for (const double sign : {1.0, -1.0}) {
    const double a = theta + sign * open / 2;
    const double vx = std::cos(a);
    const double vy = std::sin(a);
    const auto qs = (x - jx) * vx + (y - jy) * vy;
    const auto qd = (y - jy) * vx - (x - jx) * vy;
    const auto m = (qs >= 0) & (qs <= jaw) & (qd.abs() <= 0.24 * w * (1 - 0.5 * qs / jaw));
    part.masked_fill_(m & (part == 0), kPartJaws);
  }
  // A cylinder lit from the camera: bright along the axis, with a specular streak beside it.
  const auto across = (2 * d / w).clamp(-1, 1);
  p.shade = 0.5 + 0.5 * (1 - across * across).clamp_min(0).sqrt();
  p.glint = at::exp(-((d / w + 0.2) / 0.07).pow(2));
  p.part = part;
  p.present = length > 0;
  return p;
}

at::Tensor rgb(double r, double g, double b) {
  return at::tensor(std::vector<float>{static_cast<float>(r), static_cast<float>(g),
                                       static_cast<float>(b)})
      .view({1, 1, 3});
}

}  // namespace

SyntheticDomain parse_synthetic_domain(const std::string& name) {
  std::string n = name;
  std::transform(n.begin(), n.end(), n.begin(), [](unsigned char c) { return std::tolower(c); });
  if (n == "a") return SyntheticDomain::kA;
  if (n == "b") return SyntheticDomain::kB;
  throw InputError(fmt::format("unknown synthetic domain '{}' (expected a or b)", name));
}

const char* synthetic_domain_name(SyntheticDomain domain) {
  return domain == SyntheticDomain::kB ? "b" : "a";
}

SyntheticFrame render_synthetic_frame(const SyntheticVideoOptions& o, int64_t video, int64_t t) {
  TORCH_CHECK(o.width >= 16 && o.height >= 16, "synthetic frames need at least 16x16 pixels");
  const Scene s = make_scene(o, video);
  const Style& st = domain_style(o.domain);
  const double w = static_cast<double>(o.width);
  const double h = static_cast<double>(o.height);
  const auto fopt = at::TensorOptions().dtype(at::kFloat);
  const auto ys = at::arange(o.height, fopt).view({-1, 1}).expand({o.height, o.width});
  const auto xs = at::arange(o.width, fopt).view({1, -1}).expand({o.height, o.width});
  const double tf = static_cast<double>(t);

  // The camera drifts slowly: tissue and anatomy move together in world coordinates.
  const auto wx = xs + s.drift_x * std::sin(s.drift_speed * tf);
  const auto wy = ys + s.drift_y * std::cos(0.8 * s.drift_speed * tf);
  auto texture = at::zeros({o.height, o.width}, fopt);
  double norm = 0;
  for (const auto& wave : s.waves) {
    texture += wave.amplitude * at::sin(wx * (wave.fx * st.texture_scale) +
                                        wy * (wave.fy * st.texture_scale) + wave.phase);
    norm += wave.amplitude;
  }
  texture = (texture / norm).unsqueeze(2);  // [H, W, 1] in -1..1

  auto parts = at::zeros({o.height, o.width}, at::kByte);
  const auto in_a = blob_mask(s.a, wx, wy);
  const auto in_b = blob_mask(s.b, wx, wy);
  parts.masked_fill_(in_a, kPartAnatomyA);
  parts.masked_fill_(in_b, kPartAnatomyB);
  auto scene = rgb(st.tissue) + texture * rgb(st.tissue_texture);
  scene =
      at::where(in_a.unsqueeze(2), rgb(st.anatomy_a) + texture * rgb(st.anatomy_a_texture), scene);
  scene =
      at::where(in_b.unsqueeze(2), rgb(st.anatomy_b) + texture * rgb(st.anatomy_b_texture), scene);
  // Wet tissue: small specular spots that flicker.
  for (const auto& spot : s.spots) {
    const auto g =
        at::exp(-((wx - spot.x).pow(2) + (wy - spot.y).pow(2)) / (2 * spot.radius * spot.radius));
    const double flicker = 0.6 + 0.4 * std::sin(0.9 * tf + spot.phase);
    scene = scene + (255 - scene) * (flicker * g).unsqueeze(2);
  }

  // Instruments, later ones on top; motion blur averages five instants around t.
  const double cx = w / 2;
  const double cy = h / 2;
  const std::array<double, 5> instants{tf - st.blur, tf - st.blur / 2, tf, tf + st.blur / 2,
                                       tf + st.blur};
  auto image = at::zeros({o.height, o.width, 3}, fopt);
  auto instance = at::zeros({o.height, o.width}, at::kLong);
  for (const double ti : instants) {
    auto composite = scene.clone();
    for (std::size_t i = 0; i < s.instruments.size(); ++i) {
      const auto& ins = s.instruments[i];
      const auto pose = pose_instrument(ins, ti, cx, cy, xs, ys);
      if (!pose.present) continue;
      auto colour =
          at::where((pose.part == kPartShaft).unsqueeze(2), rgb(st.shaft[ins.type]),
                    at::where((pose.part == kPartWrist).unsqueeze(2), rgb(st.wrist), rgb(st.jaws)));
      colour = colour * pose.shade.unsqueeze(2);
      colour = colour + (255 - colour) * (st.glint * pose.glint).unsqueeze(2);
      const auto m = (pose.part > 0).unsqueeze(2);
      composite = at::where(m, colour, composite);
      if (ti == tf) {
        parts = at::where(pose.part > 0, pose.part, parts);
        instance.masked_fill_(pose.part > 0, static_cast<int64_t>(i + 1));
      }
    }
    image += composite / static_cast<double>(instants.size());
  }

  // The endoscope's round field: light falls off towards its rim, black outside.
  const auto e = ((xs - cx) / (0.62 * w)).pow(2) + ((ys - cy) / (0.72 * h)).pow(2);
  const auto border = e > 1;
  image = image * (1 - st.falloff * e.clamp_max(1)).unsqueeze(2);
  if (st.tinted) image = image * rgb(st.light);
  image = at::where(border.unsqueeze(2), rgb(4, 4, 4), image);
  parts.masked_fill_(border, kPartBorder);
  instance.masked_fill_(border, 0);

  // Sensor noise from the clip's own generator.
  Rng rng(mix(mix(o.seed, static_cast<uint64_t>(video)), static_cast<uint64_t>(t) + 7919));
  std::vector<float> noise(static_cast<std::size_t>(o.height * o.width * 3));
  for (auto& v : noise) v = static_cast<float>(rng.uniform(-st.noise, st.noise));
  image = image + at::tensor(noise).view({o.height, o.width, 3});

  SyntheticFrame f;
  f.image = image.round().clamp(0, 255).to(at::kByte).contiguous();
  f.parts = parts.contiguous();
  f.instance = instance.contiguous();
  for (const auto& ins : s.instruments) f.instrument_types.push_back(ins.type);
  return f;
}

int64_t write_synthetic_videos(const SyntheticVideoOptions& o, const fs::path& out) {
  if (o.videos < 1 || o.frames < 1)
    throw InputError("synth needs at least one video and one frame");
  if (o.width < 16 || o.height < 16 || o.width > 8192 || o.height > 8192) {
    throw InputError(fmt::format("synth size {}x{} is outside 16..8192", o.width, o.height));
  }
  // Each layout's classes for the scene parts and the three instrument types.
  static constexpr const char* kE17Types[] = {"Prograsp_Forceps", "Monopolar_Curved_Scissors",
                                              "Large_Needle_Driver"};
  static constexpr const char* kSides[] = {"Left", "Right", "Third", "Fourth"};
  std::vector<VideoClass> classes;
  switch (o.layout) {
    case VideoLayout::kCholecSeg8k:
      classes = cholecseg8k_classes();
      break;
    case VideoLayout::kEndoVis17:
      classes = endovis17_classes();
      break;
    case VideoLayout::kEndoVis18:
      classes = endovis18_classes();
      break;
    case VideoLayout::kCocoVideo:
      // Category 0 is a real class, as in the fine-tuning tools' EndoVis files.
      classes = {{0, "Grasper", -1, {170, 255, 0}, false},
                 {1, "Hook", -1, {169, 255, 184}, false},
                 {2, "Needle_Driver", -1, {0, 255, 255}, false},
                 {3, "Liver", -1, {255, 114, 114}, false},
                 {4, "Gallbladder", -1, {255, 160, 165}, false}};
      break;
  }
  VideoLayoutWriter writer(o.layout, out, classes);
  for (int64_t v = 0; v < o.videos; ++v) {
    std::string id;
    switch (o.layout) {
      case VideoLayout::kCholecSeg8k:
        id = fmt::format("video{:02d}_00000", v + 1);
        break;
      case VideoLayout::kEndoVis17:
        id = fmt::format("instrument_dataset_{}", v + 1);
        break;
      case VideoLayout::kEndoVis18:
        id = fmt::format("seq_{}", v + 1);
        break;
      case VideoLayout::kCocoVideo:
        id = fmt::format("video_{}", v + 1);
        break;
    }
    for (int64_t t = 0; t < o.frames; ++t) {
      const SyntheticFrame f = render_synthetic_frame(o, v, t);
      const auto& p = f.parts;
      at::Tensor labels;
      std::vector<ObjectMask> objects;
      const auto instrument_class = [&](const std::array<int64_t, 3>& by_type) {
        auto per_type = at::full(f.instance.sizes(), int64_t{-1}, at::kLong);
        for (std::size_t k = 0; k < f.instrument_types.size(); ++k) {
          per_type.masked_fill_(f.instance == static_cast<int64_t>(k + 1),
                                by_type[f.instrument_types[k]]);
        }
        return per_type;
      };
      switch (o.layout) {
        case VideoLayout::kCholecSeg8k: {
          labels = at::full(p.sizes(), int64_t{1}, at::kLong);  // Abdominal Wall
          labels.masked_fill_(p == kPartAnatomyA, 2);           // Liver
          labels.masked_fill_(p == kPartAnatomyB, 10);          // Gallbladder
          labels.masked_fill_(p == kPartBorder, 0);             // Black Background
          const auto tools = instrument_class({5, 9, 5});       // Grasper, L-hook, Grasper
          labels = at::where(tools >= 0, tools, labels);
          break;
        }
        case VideoLayout::kEndoVis18: {
          labels = at::zeros(p.sizes(), at::kLong);
          labels.masked_fill_(p == kPartAnatomyA, 4);
          labels.masked_fill_(p == kPartAnatomyB, 5);
          labels.masked_fill_(p == kPartShaft, 1);
          labels.masked_fill_(p == kPartJaws, 2);
          labels.masked_fill_(p == kPartWrist, 3);
          break;
        }
        case VideoLayout::kEndoVis17: {
          // Every instrument has a mask file in every frame, empty while it is out of view.
          for (std::size_t k = 0; k < f.instrument_types.size(); ++k) {
            const auto mine = f.instance == static_cast<int64_t>(k + 1);
            auto mask = at::zeros(p.sizes(), at::kByte);
            mask.masked_fill_(mine & (p == kPartShaft), 10);
            mask.masked_fill_(mine & (p == kPartWrist), 20);
            mask.masked_fill_(mine & (p == kPartJaws), 30);
            const char* type = kE17Types[f.instrument_types[k]];
            objects.push_back(
                {*endovis17_instrument_class(type), fmt::format("{}_{}", kSides[k], type), mask});
          }
          break;
        }
        case VideoLayout::kCocoVideo: {
          for (std::size_t k = 0; k < f.instrument_types.size(); ++k) {
            const auto mine = f.instance == static_cast<int64_t>(k + 1);
            if (mine.any().item<bool>()) {
              objects.push_back(
                  {f.instrument_types[k], classes[f.instrument_types[k]].name, mine.to(at::kByte)});
            }
          }
          for (const auto& [part, value] :
               {std::pair{kPartAnatomyA, 3}, std::pair{kPartAnatomyB, 4}}) {
            const auto m = p == part;
            if (m.any().item<bool>())
              objects.push_back({value, classes[value].name, m.to(at::kByte)});
          }
          break;
        }
      }
      writer.add_frame(id, t, f.image, labels, objects);
    }
  }
  writer.finish();
  return writer.frames_written();
}

}  // namespace iris
