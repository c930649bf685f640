// The scenarios by the name tests/browser.rs passes to run.mjs.

import { bannerIdle, bannerLifetime } from './banner.mjs';
import { editorAndKeys, files, uploadScenario } from './files.mjs';
import { embed } from './embed.mjs';
import { fullScreen, queries } from './fidelity.mjs';
import { login } from './login.mjs';
import { reconnect } from './reconnect.mjs';
import { recordings } from './recordings.mjs';
import { sandboxScenario } from './sandbox.mjs';
import { tabsScenario } from './tabs.mjs';
import { takeover } from './takeover.mjs';
import { workbench } from './workbench.mjs';
import { basePath, context, echo, resize } from './terminal.mjs';

export const SCENARIOS = {
  echo,
  resize,
  tabs: tabsScenario,
  files: async (t) => {
    await files(t);
    await uploadScenario(t);
    await editorAndKeys(t);
  },
  context,
  base_path: basePath,
  reconnect,
  takeover,
  login,
  banner_lifetime: bannerLifetime,
  banner_idle: bannerIdle,
  queries,
  full_screen: fullScreen,
  embed,
  workbench,
  sandbox: sandboxScenario,
  recordings,
};
