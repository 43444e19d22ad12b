#!/usr/bin/env node
// The CDK app wasmgate deploys: `npx cdk synth` writes cdk.out/WasmgateWeb.template.json, and
// `wasmgate deploy cdk.out/WasmgateWeb.template.json --stack web` runs it (see README.md).
import * as cdk from 'aws-cdk-lib';
import { WebStack } from '../lib/web-stack';

const app = new cdk.App();
new WebStack(app, 'WasmgateWeb', {
  // The Wasm image to run: a registry reference (`cdk synth -c image=127.0.0.1:5000/hello:1`)
  // or a file path relative to cdk.out/, where the template is written.
  image: app.node.tryGetContext('image') ?? '../../../guests/target/wasm32-wasip2/release/http_hello.wasm',
});
