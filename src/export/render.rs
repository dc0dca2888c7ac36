//! The export's renderer: egui's wgpu renderer drawing the frame in tiles of at most [`TILE`] pixels
//! a side, each read back and copied into the whole picture.
//!
//! egui_kittest's own renderer draws the whole frame in one submission and gives it 10 s: on a
//! software adapter (Mesa's lavapipe, which it prefers for deterministic pixels) an 8192x8192
//! frame takes longer and failed with a poll timeout. A tile is a small, bounded amount of work;
//! the frame is tessellated once and each tile draws the same meshes moved by the tile's offset
//! (whole pixels, so the pixels are the ones a single pass draws). Nothing here panics: a device
//! error or a timeout is an error message.

use egui::epaint::{ClippedPrimitive, Primitive};
use egui::{Rect, TexturesDelta, Vec2};
use egui_wgpu::{RenderState, ScreenDescriptor, wgpu};
use image::RgbaImage;
use std::time::Duration;

/// The largest tile, in pixels a side.
pub const TILE: u32 = 2048;

/// How long one tile may take on the device (a 2048x2048 tile takes well under a second on
/// lavapipe; this only catches a lost device).
const TILE_TIMEOUT: Duration = Duration::from_secs(60);

/// An [`egui_kittest::TestRenderer`] that draws in tiles.
pub struct TiledRenderer {
    render_state: RenderState,
    tile: u32,
}

impl TiledRenderer {
    /// On the adapter egui_kittest picks (a software one when there is one: the same pixels on
    /// every machine). An error says why no adapter could be used.
    pub fn new() -> Result<Self, String> {
        let setup = egui_kittest::wgpu::default_wgpu_setup();
        let instance = pollster::block_on(setup.new_instance());
        let render_state = pollster::block_on(RenderState::create(
            &egui_wgpu::WgpuConfiguration {
                wgpu_setup: setup,
                ..Default::default()
            },
            &instance,
            None,
            egui_wgpu::RendererOptions::PREDICTABLE,
        ))
        .map_err(|e| e.to_string())?;
        Ok(TiledRenderer {
            render_state,
            tile: TILE,
        })
    }

    /// Tiles of at most `px` pixels a side (tests use small tiles to check the seams).
    pub fn with_tile(mut self, px: u32) -> Self {
        self.tile = px.max(16);
        self
    }

    /// Draw `primitives` (already moved to the tile's origin) into a `size` texture and read it back.
    fn draw_tile(
        &self,
        primitives: &[ClippedPrimitive],
        size: [u32; 2],
        pixels_per_point: f32,
    ) -> Result<RgbaImage, String> {
        let rs = &self.render_state;
        let screen = ScreenDescriptor {
            pixels_per_point,
            size_in_pixels: size,
        };
        let mut encoder = rs
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("export tile"),
            });
        let texture = rs.device.create_texture(&wgpu::TextureDescriptor {
            label: Some("export tile"),
            size: wgpu::Extent3d {
                width: size[0],
                height: size[1],
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: rs.target_format,
            usage: wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::COPY_SRC,
            view_formats: &[],
        });
        let view = texture.create_view(&wgpu::TextureViewDescriptor::default());
        let user_buffers = {
            let mut renderer = rs.renderer.write();
            let user_buffers =
                renderer.update_buffers(&rs.device, &rs.queue, &mut encoder, primitives, &screen);
            let mut pass = encoder
                .begin_render_pass(&wgpu::RenderPassDescriptor {
                    label: Some("export tile"),
                    color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                        view: &view,
                        resolve_target: None,
                        ops: wgpu::Operations {
                            load: wgpu::LoadOp::Clear(wgpu::Color::TRANSPARENT),
                            store: wgpu::StoreOp::Store,
                        },
                        depth_slice: None,
                    })],
                    ..Default::default()
                })
                .forget_lifetime();
            renderer.render(&mut pass, primitives, &screen);
            user_buffers
        };
        // Read back: rows padded to wgpu's copy alignment.
        let unpadded = size[0] as usize * 4;
        let align = wgpu::COPY_BYTES_PER_ROW_ALIGNMENT as usize;
        let padded = unpadded.div_ceil(align) * align;
        let buffer = rs.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("export tile readback"),
            size: (padded * size[1] as usize) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        encoder.copy_texture_to_buffer(
            texture.as_image_copy(),
            wgpu::TexelCopyBufferInfo {
                buffer: &buffer,
                layout: wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: Some(padded as u32),
                    rows_per_image: None,
                },
            },
            wgpu::Extent3d {
                width: size[0],
                height: size[1],
                depth_or_array_layers: 1,
            },
        );
        let submission = rs
            .queue
            .submit(user_buffers.into_iter().chain([encoder.finish()]));
        let (sender, receiver) = std::sync::mpsc::channel();
        buffer
            .slice(..)
            .map_async(wgpu::MapMode::Read, move |r| drop(sender.send(r)));
        rs.device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(submission),
                timeout: Some(TILE_TIMEOUT),
            })
            .map_err(|e| {
                format!(
                    "the device did not finish a {}x{} tile: {e}",
                    size[0], size[1]
                )
            })?;
        receiver
            .recv()
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("reading the picture back: {e}"))?;
        let data: Vec<u8> = {
            let mapped = buffer
                .slice(..)
                .get_mapped_range()
                .map_err(|e| format!("reading the picture back: {e}"))?;
            mapped
                .chunks_exact(padded)
                .flat_map(|row| &row[..unpadded])
                .copied()
                .collect()
        };
        RgbaImage::from_raw(size[0], size[1], data)
            .ok_or_else(|| "the tile read back has the wrong size".to_string())
    }
}

/// `primitive` moved by `-offset` (points), or `None` when its clip rectangle misses `tile`.
fn moved(primitive: &ClippedPrimitive, offset: Vec2, tile: Rect) -> Option<ClippedPrimitive> {
    if !primitive.clip_rect.intersects(tile) {
        return None;
    }
    let primitive_moved = match &primitive.primitive {
        Primitive::Mesh(mesh) => {
            let mut mesh = mesh.clone();
            for v in &mut mesh.vertices {
                v.pos -= offset;
            }
            Primitive::Mesh(mesh)
        }
        Primitive::Callback(callback) => {
            let mut callback = callback.clone();
            callback.rect = callback.rect.translate(-offset);
            Primitive::Callback(callback)
        }
    };
    Some(ClippedPrimitive {
        clip_rect: primitive.clip_rect.translate(-offset),
        primitive: primitive_moved,
    })
}

impl egui_kittest::TestRenderer for TiledRenderer {
    fn handle_delta(&mut self, delta: &mut TexturesDelta) {
        let rs = &self.render_state;
        let mut renderer = rs.renderer.write();
        // Order does not matter: each texture is set or freed once.
        #[allow(clippy::iter_over_hash_type)]
        for (id, images) in delta.set.drain() {
            for image in images {
                renderer.update_texture(&rs.device, &rs.queue, id, &image);
            }
        }
        #[allow(clippy::iter_over_hash_type)]
        for id in delta.free.drain() {
            renderer.free_texture(&id);
        }
    }

    fn render(
        &mut self,
        ctx: &egui::Context,
        output: &egui::FullOutput,
    ) -> Result<RgbaImage, String> {
        let ppp = ctx.pixels_per_point();
        let size = ctx.content_rect().size() * ppp;
        let (w, h) = (size.x.round() as u32, size.y.round() as u32);
        if w == 0 || h == 0 {
            return Err(format!("nothing to draw ({w}x{h} pixels)"));
        }
        let tessellated = ctx.tessellate(output.shapes.clone(), ppp);
        if w <= self.tile && h <= self.tile {
            return self.draw_tile(&tessellated, [w, h], ppp);
        }
        let mut image = RgbaImage::new(w, h);
        for y in (0..h).step_by(self.tile as usize) {
            for x in (0..w).step_by(self.tile as usize) {
                let size = [self.tile.min(w - x), self.tile.min(h - y)];
                let offset = egui::vec2(x as f32, y as f32) / ppp;
                let tile = Rect::from_min_size(
                    offset.to_pos2(),
                    egui::vec2(size[0] as f32, size[1] as f32) / ppp,
                );
                let primitives: Vec<ClippedPrimitive> = tessellated
                    .iter()
                    .filter_map(|p| moved(p, offset, tile))
                    .collect();
                let part = self.draw_tile(&primitives, size, ppp)?;
                image::imageops::replace(&mut image, &part, x as i64, y as i64);
            }
        }
        Ok(image)
    }
}
