#include "cli/cmd_data.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <iostream>
#include <sstream>

#include "core/build_info.h"
#include "core/error.h"
#include "data/inspect.h"
#include "data/synthetic_images.h"
#include "data/synthetic_video.h"
#if IRIS_HAVE_NIFTI
#include "data/synthetic_volume.h"
#endif
#include "data/video_dataset.h"

namespace iris::cli {

std::function<int()> setup_data(CLI::App& app, const GlobalOptions& globals) {
  app.require_subcommand(1);
  struct Options {
    std::string path;
    bool all = false;
    bool json = false;
  };
  auto options = std::make_shared<Options>();
  CLI::App* inspect =
      app.add_subcommand("inspect", "detect a dataset layout and list classes and problems");
  inspect->add_option("PATH", options->path, "a dataset folder or a volume file")->required();
  inspect->add_flag("--all", options->all, "list every class");
  inspect->add_flag("--json", options->json, "print JSON instead of text");

  // convert: surgical layouts <-> COCO-video JSON.
  struct ConvertOptions {
    std::string in, out, to;
  };
  auto convert_options = std::make_shared<ConvertOptions>();
  CLI::App* convert = app.add_subcommand("convert",
                                         "convert a surgical video dataset (native "
                                         "layouts <-> COCO-video JSON)");
  convert->add_option("IN", convert_options->in, "dataset folder or COCO JSON")->required();
  convert->add_option("OUT", convert_options->out, "output folder")->required();
  convert->add_option("--to", convert_options->to, "coco | cholecseg8k | endovis18")->required();

  // synth surgical-video: deterministic synthetic clips in a native layout.
  struct SynthOptions {
    std::string kind, out, layout = "endovis18", size = "320x256", domain = "a";
    SyntheticVideoOptions video;
  };
  auto synth_options = std::make_shared<SynthOptions>();
  CLI::App* synth = app.add_subcommand("synth", "write synthetic data (surgical-video, volumes, images)");
  synth->add_option("KIND", synth_options->kind, "surgical-video | volumes | images")->required();
  synth->add_option("--out", synth_options->out, "output folder")->required();
  synth->add_option("--videos", synth_options->video.videos, "number of clips")
      ->capture_default_str();
  synth->add_option("--frames", synth_options->video.frames, "frames per clip")
      ->capture_default_str();
  synth->add_option("--seed", synth_options->video.seed, "seed (same seed, same pixels)")
      ->capture_default_str();
  synth
      ->add_option("--instruments", synth_options->video.instruments, "instruments per clip (1..4)")
      ->capture_default_str();
  synth->add_option("--layout", synth_options->layout, "cholecseg8k | endovis17 | endovis18 | coco")
      ->capture_default_str();
  synth->add_option("--size", synth_options->size, "frame size WxH; volumes: voxels per side (64)")
      ->capture_default_str();
  synth
      ->add_option("--domain", synth_options->domain,
                   "surgical-video appearance: a | b (same scenes and classes, another look)")
      ->capture_default_str();
  // synth volumes: imagesTr/labelsTr NIfTI tree for IRIS.
  auto volume_counts = std::make_shared<std::pair<int64_t, int64_t>>(4, 3);  // cases, classes
  synth->add_option("--cases", volume_counts->first, "volumes, images: number of cases")
      ->capture_default_str();
  synth->add_option("--classes", volume_counts->second, "volumes: organ classes per case")
      ->capture_default_str();

  return [options, inspect, convert, convert_options, synth, synth_options, volume_counts,
          &globals] {
    if (convert->parsed()) {
      const auto to = parse_video_layout(convert_options->to);
      const int64_t n = convert_video_dataset(convert_options->in, convert_options->out, to);
      std::cout << n << " frames written to " << convert_options->out << " (" << layout_name(to)
                << ")\n";
      return 0;
    }
    if (synth->parsed()) {
      auto& o = *synth_options;
      if (o.kind == "volumes") {
#if IRIS_HAVE_NIFTI
        SyntheticVolumeOptions v;
        v.cases = volume_counts->first;
        v.classes = volume_counts->second;
        v.seed = synth->get_option("--seed")->count() == 0 && globals.seed ? *globals.seed
                                                                           : o.video.seed;
        if (synth->get_option("--size")->count() > 0) {
          std::size_t used = 0;
          try {
            v.size = std::stoll(o.size, &used);
          } catch (const std::exception&) {
            used = 0;
          }
          if (used != o.size.size())
            throw UsageError("--size: expected voxels per side such as 64, got '" + o.size + "'");
        }
        const int64_t n = write_synthetic_volumes(v, o.out);
        std::cout << n << " volumes of " << v.size << "^3 voxels with " << v.classes
                  << " classes written to " << o.out << " (imagesTr/labelsTr)\n";
        return 0;
#else
        throw NotAvailableError(
            "synth volumes: NIfTI support is off in this build (IRIS_WITH_NIFTI)");
#endif
      }
      if (o.kind == "images") {
        SyntheticImageOptions im;
        im.cases = volume_counts->first;
        im.seed = synth->get_option("--seed")->count() == 0 && globals.seed ? *globals.seed
                                                                            : o.video.seed;
        if (synth->get_option("--size")->count() > 0) {
          char x = 0;
          std::istringstream size(o.size);
          if (!(size >> im.width >> x >> im.height) || (x != 'x' && x != 'X') || !size.eof()) {
            throw UsageError("--size: expected WxH such as 96x80, got '" + o.size + "'");
          }
        }
        const int64_t n = write_synthetic_image_folder(im, o.out);
        std::cout << n << " images of " << im.width << "x" << im.height
                  << " with polyp masks written to " << o.out << " (images/, masks/)\n";
        return 0;
      }
      if (o.kind != "surgical-video") {
        throw UsageError("synth: unknown kind '" + o.kind +
                         "'; available: surgical-video, volumes, images");
      }
      char x = 0;
      std::istringstream size(o.size);
      if (!(size >> o.video.width >> x >> o.video.height) || (x != 'x' && x != 'X') ||
          !size.eof()) {
        throw UsageError("--size: expected WxH such as 320x256, got '" + o.size + "'");
      }
      o.video.layout = parse_video_layout(o.layout);
      o.video.domain = parse_synthetic_domain(o.domain);
      // `iris --seed S data synth ...` works too.
      if (synth->get_option("--seed")->count() == 0 && globals.seed) o.video.seed = *globals.seed;
      const int64_t n = write_synthetic_videos(o.video, o.out);
      std::cout << n << " frames in " << o.video.videos << " videos written to " << o.out << " ("
                << layout_name(o.video.layout) << ")\n";
      return 0;
    }
    (void)inspect;
    const InspectReport report = inspect_path(options->path);
    if (options->json) {
      std::cout << report.to_json().dump(2) << "\n";
    } else {
      std::cout << report.to_text(options->all ? SIZE_MAX : 12);
    }
    return 0;
  };
}

}  // namespace iris::cli
