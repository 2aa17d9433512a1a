// The single-process subcommands of `nexus`, one file each (trainer/cmd_<name>.cpp). argv[0] is
// the subcommand's name. Bad usage and unusable inputs throw a ConfigError subclass (main prints
// the message and exits 2); each returns 0 on success. Run them on one rank: main dispatches them
// on rank 0 only when launched under mpirun.
#pragma once

namespace nexus {

// `nexus eval --model PATH (--tokens 1,2,3 | --text TEXT) [--logits-out FILE.npy]`: one forward
// pass of Model<float> over the sequence (batch 1, each token's target the next token); prints
// the mean next-token loss and writes the logits [T, V] as a float32 .npy.
int command_eval(int argc, char** argv);

// `nexus export CHECKPOINT --out DIR [--dtype bf16|fp32] [--max-shard-bytes N]`: a Hugging Face
// Bamba folder from anything load_model_files takes.
int command_export(int argc, char** argv);

// `nexus inspect CHECKPOINT`: step, tokens, config, and every tensor's name, shape and L2 norm
// with the norms of its optimizer moments.
int command_inspect(int argc, char** argv);

// `nexus generate --model PATH (--prompt TEXT | --tokens IDS) --max-new-tokens N [--temperature T]
// [--top-k K] [--seed S]`: recurrent decoding (InferenceSession) with a paged KV cache.
int command_generate(int argc, char** argv);

}  // namespace nexus
