//! The current step as a notebook of blocks: prose, op cells, kernel source and predict-then-reveal
//! questions.

use super::*;

impl KernelbookApp {
    pub(super) fn step_ui(&mut self, ui: &mut Ui) {
        let Some(lesson) = self.lesson().cloned() else {
            ui.heading("No lesson could be loaded");
            ui.label("See the error cards in the lesson list.");
            return;
        };
        let Some(step) = lesson.steps.get(self.step).cloned() else {
            return;
        };
        let step_index = self.step;
        // Cells are numbered in the order they appear, whatever column they land in.
        let mut next_cell = 0;
        let cell_numbers: Vec<Option<usize>> = step
            .blocks
            .iter()
            .map(|b| {
                matches!(b, Block::Cell(_)).then(|| {
                    next_cell += 1;
                    next_cell - 1
                })
            })
            .collect();
        let mut sweep_toggled = false;
        let title = RichText::new(format!("{} · {}", step_index + 1, step.title))
            .strong()
            .size(self.theme.text_heading);
        let is_live = |b: &Block| matches!(b, Block::Cell(_) | Block::Kernel(_));
        let two_columns = self.classroom.active
            && step.blocks.iter().any(is_live)
            && step
                .blocks
                .iter()
                .any(|b| !is_live(b) && !matches!(b, Block::Notes(_)));
        if two_columns {
            // Classroom: the words on the left, the live cells on the right, so that the picture
            // a room looks at fits one screen.
            ui.label(title);
            ui.add_space(self.theme.block_gap * 0.5);
            let gap = self.theme.column_gap * 2.0;
            let left_width = ((ui.available_width() - gap) * 0.42).max(0.0);
            let height = ui.available_height();
            ui.horizontal_top(|ui| {
                ui.spacing_mut().item_spacing.x = gap;
                for (side, width) in [
                    (0, left_width),
                    (1, ui.available_width() - left_width - gap),
                ] {
                    ui.allocate_ui_with_layout(
                        egui::vec2(width.max(0.0), height),
                        egui::Layout::top_down(egui::Align::Min),
                        |ui| {
                            ui.set_width(width.max(0.0));
                            egui::ScrollArea::vertical()
                                .id_salt(("step", &lesson.id, step_index, side))
                                .auto_shrink([false, false])
                                .show(ui, |ui| {
                                    for (b, block) in step.blocks.iter().enumerate() {
                                        if is_live(block) == (side == 1) {
                                            self.block_ui(
                                                ui,
                                                &lesson.id,
                                                step_index,
                                                b,
                                                block,
                                                cell_numbers[b],
                                                &mut sweep_toggled,
                                            );
                                        }
                                    }
                                });
                        },
                    );
                }
            });
        } else {
            egui::ScrollArea::vertical()
                .id_salt(("step", &lesson.id, step_index))
                .auto_shrink([false, false])
                .show(ui, |ui| {
                    ui.set_max_width(self.theme.content_max_width.min(ui.available_width()));
                    ui.label(title);
                    ui.add_space(self.theme.block_gap);
                    for (b, block) in step.blocks.iter().enumerate() {
                        self.block_ui(
                            ui,
                            &lesson.id,
                            step_index,
                            b,
                            block,
                            cell_numbers[b],
                            &mut sweep_toggled,
                        );
                    }
                });
        }
        if sweep_toggled {
            self.toggle_sweep();
        }
    }

    /// One block of a step: prose, an op cell (number `cell`), kernel source, a predict question,
    /// or the teacher's notes (never in classroom mode: the presenter view has them).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn block_ui(
        &mut self,
        ui: &mut Ui,
        lesson_id: &str,
        step_index: usize,
        b: usize,
        block: &Block,
        cell: Option<usize>,
        sweep_toggled: &mut bool,
    ) {
        match block {
            Block::Prose(md) => {
                CommonMarkViewer::new().show(ui, &mut self.markdown, md);
            }
            Block::Cell(spec) => {
                let key = CellKey {
                    lesson: lesson_id.to_string(),
                    step: step_index,
                    cell: cell.unwrap_or(0),
                };
                let worker = &mut self.worker;
                let state = self.cells.entry(key.clone()).or_insert_with(|| {
                    let mut c = CellState::new(spec);
                    Self::submit(worker, &key, &mut c);
                    c
                });
                let id = egui::Id::unique(("cell", &key.lesson, key.step, key.cell));
                let events = cell_ui(
                    ui,
                    id,
                    state,
                    &self.theme,
                    CellOptions {
                        hide_timings: self.options.hide_timings,
                        sweeping: self.classroom.sweep.as_ref().is_some_and(|s| s.cell == key),
                        compact: self.classroom.active,
                    },
                    RooflineData {
                        backends: self.backends.as_deref(),
                        measurements: &self.measurements,
                    },
                );
                if events.changed {
                    Self::submit(&mut self.worker, &key, state);
                }
                if events.toggle_sweep {
                    *sweep_toggled = true;
                }
                if events.measure {
                    self.start_measure(&key);
                }
            }
            Block::Kernel(k) => {
                let cuda = crate::sources::cuda(&k.topic).unwrap_or("");
                let wgsl = crate::sources::wgsl(&k.topic).unwrap_or("");
                let title = format!(
                    "kernel source: kernels/{}.cu · shaders/{}.wgsl",
                    k.topic, k.topic
                );
                kernel_ui(
                    ui,
                    ("kernel", lesson_id, step_index, b),
                    &title,
                    cuda,
                    wgsl,
                    &k.all_marks(),
                    &self.theme,
                );
            }
            Block::Predict(p) => {
                let key = (lesson_id.to_string(), step_index, b);
                let chosen = self.answers.get(&key).copied();
                if let Some(choice) = predict_ui(ui, p, chosen, &self.theme) {
                    self.answers.insert(key, choice);
                }
            }
            Block::Notes(_) if self.classroom.active => return,
            Block::Notes(notes) => {
                egui::CollapsingHeader::new(
                    RichText::new("Notes for the teacher").color(self.theme.text_weak),
                )
                .id_salt(("notes", lesson_id, step_index, b))
                .default_open(false)
                .show(ui, |ui| {
                    CommonMarkViewer::new().show(ui, &mut self.markdown, notes);
                });
            }
        }
        ui.add_space(self.theme.block_gap);
    }
}
